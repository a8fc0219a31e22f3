"""OCI runtime integration: bundles, cgroups, seccomp and the runtime CLI."""
