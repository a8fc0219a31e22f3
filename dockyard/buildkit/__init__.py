"""BuildKit's API on the engine: the /grpc control service, /session, and their wire."""
