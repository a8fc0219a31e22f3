"""Containers: records, validation, OCI spec generation and the lifecycle."""
