"""The engine's event stream."""
