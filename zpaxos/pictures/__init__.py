"""Pictures of runs: the log model, message sequence charts (SVG, text) and status tables."""
