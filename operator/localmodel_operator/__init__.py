"""The kopf operator that turns LocalModels into workloads, and the `localmodel` CLI."""
