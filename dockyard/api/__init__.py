"""The Docker Engine API over a unix socket: a translation shell around the engine."""
