"""Content-addressed blob store."""
