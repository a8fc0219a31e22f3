"""Plugins: Docker's plugin protocols spoken by the engine.

`discovery` finds v1 plugins by name in the discovery directories; `client`
is the HTTP transport with Docker's error, retry and timeout rules;
`protocol/` holds one module per plugin kind (its endpoints, messages and a
typed client); `legacy` activates and caches v1 plugins; `managed` runs v2
plugins (rootfs + config.json) under the OCI runtime; `service` answers "the
plugin named N of kind K" for the rest of the engine; `authorization` is the
AuthZ chain around API requests; `check` is the conformance checker.
"""
