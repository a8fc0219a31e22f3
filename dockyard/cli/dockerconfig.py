"""Registry logins kept in docker's own config.json, so the two tools share them.

The file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
Logins are stored as docker stores them: `auths[<server>].auth` (base64 of
`user:password`) unless a credential helper is configured (`credsStore`, or
`credHelpers[<server>]`), in which case `docker-credential-<helper>` keeps
the secret and the file only names the server. Docker Hub's key is
`https://index.docker.io/v1/`. Other keys in the file are kept untouched.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from dockyard.images.reference import DEFAULT_DOMAIN

HUB_SERVER = "https://index.docker.io/v1/"


def path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def server_key(host: str) -> str:
    """The config.json key of a registry host."""
    return HUB_SERVER if host in (DEFAULT_DOMAIN, "index.docker.io", "") else host


def _load() -> dict[str, Any]:
    try:
        data = json.loads(path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise SystemExit(f"error reading {path()}: {e}") from None
    return data if isinstance(data, dict) else {}


def _save(data: dict[str, Any]) -> None:
    target = path()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".config.json.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent="\t")
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


def _helper(data: dict[str, Any], key: str) -> str | None:
    helpers = data.get("credHelpers") or {}
    return helpers.get(key) or data.get("credsStore") or None


def _run_helper(helper: str, action: str, payload: str) -> str:
    result = subprocess.run(
        [f"docker-credential-{helper}", action],
        input=payload,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"error {action}ing credentials with docker-credential-{helper}: "
            f"{(result.stdout or result.stderr).strip()}"
        )
    return result.stdout


def credentials(host: str) -> dict[str, str]:
    """Docker's AuthConfig for `host` (empty when not logged in)."""
    data = _load()
    key = server_key(host)
    helper = _helper(data, key)
    if helper:
        try:
            found = json.loads(_run_helper(helper, "get", key))
        except (SystemExit, ValueError):
            return {}
        if found.get("Username") == "<token>":
            return {"identitytoken": found.get("Secret", ""), "serveraddress": key}
        return {
            "username": found.get("Username", ""),
            "password": found.get("Secret", ""),
            "serveraddress": key,
        }
    entry = (data.get("auths") or {}).get(key) or {}
    result = {"serveraddress": key}
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        result.update(username=user, password=password)
    if entry.get("identitytoken"):
        result["identitytoken"] = entry["identitytoken"]
    return result if len(result) > 1 else {}


def registry_auth_header(host: str) -> str:
    """The X-Registry-Auth value for `host`: URL-safe base64 of its AuthConfig."""
    return base64.urlsafe_b64encode(json.dumps(credentials(host)).encode()).decode()


def store(host: str, username: str, password: str, identity_token: str = "") -> None:
    data = _load()
    key = server_key(host)
    helper = _helper(data, key)
    if helper:
        user, secret = ("<token>", identity_token) if identity_token else (username, password)
        _run_helper(
            helper, "store", json.dumps({"ServerURL": key, "Username": user, "Secret": secret})
        )
        data.setdefault("auths", {})[key] = {}
    elif identity_token:
        data.setdefault("auths", {})[key] = {
            "auth": base64.b64encode(f"{username}:".encode()).decode(),
            "identitytoken": identity_token,
        }
    else:
        data.setdefault("auths", {})[key] = {
            "auth": base64.b64encode(f"{username}:{password}".encode()).decode()
        }
    _save(data)


def erase(host: str) -> bool:
    """Forget the login for `host`; False if there was none."""
    data = _load()
    key = server_key(host)
    auths = data.get("auths") or {}
    if key not in auths:
        return False
    helper = _helper(data, key)
    if helper:
        try:
            _run_helper(helper, "erase", key)
        except SystemExit:
            pass
    del auths[key]
    _save(data)
    return True
