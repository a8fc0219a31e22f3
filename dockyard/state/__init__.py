"""Metadata: one SQLite database (WAL) holding every record the daemon owns."""
