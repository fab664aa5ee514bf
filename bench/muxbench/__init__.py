"""muxbench: the runner of the comparative benchmark (see bench/README.md)."""
