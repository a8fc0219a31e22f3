"""Networking: networks, endpoints, sandboxes (network namespaces), drivers, IPAM, DNS, ports."""
