"""Built-in network drivers: bridge, host, null. Each implements `NetworkDriver`."""
