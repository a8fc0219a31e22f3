"""Container logs."""
