"""Command-line interface of the `dockyard` client."""
