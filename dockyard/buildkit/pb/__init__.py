"""Messages generated from BuildKit's .proto files (see README.md and regenerate.py)."""
