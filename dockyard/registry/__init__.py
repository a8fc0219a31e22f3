"""The distribution client: talking to OCI registries to pull and push images.

`client` reaches a registry (endpoint and TLS choice, authentication,
redirects, error decoding), `auth` holds the challenge and token logic,
`pull` and `push` are the two transfers, and `progress` the events they
report while they run.
"""
