"""The runtime: what runs inside a model pod (and in local mode)."""
