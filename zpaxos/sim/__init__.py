"""The deterministic simulator (it drives the real hosts) and its deliberately broken rules."""
