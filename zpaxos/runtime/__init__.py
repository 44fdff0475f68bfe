"""The runtime: config, codec, the socket layer, the pure hosts, node and client loops, storage."""
