"""An authorization plugin driven by a policy file.

The policy is JSON (file named by `POLICY_FILE`, default
`/etc/dockyard/authz-policy.json`), read again whenever it changes:

    {
      "default": "allow",
      "rules": [
        {"methods": ["POST"], "path": "^/containers/create$",
         "body": {"HostConfig.Privileged": true},
         "action": "deny", "message": "privileged containers are not allowed"},
        {"methods": ["DELETE"], "path": "^/images/", "action": "deny",
         "message": "images are removed by the release team"},
        {"path": "^/_ping$", "action": "allow"}
      ]
    }

Rules are tried in order and the first that matches decides. A rule matches
when every condition it has holds: `methods` (any of them), `path` (a regular
expression searched in the decoded request path, without its `/v1.NN`
prefix and query), `users` (the TLS user, when the engine has one), and `body` (dotted
paths into the JSON request body with the values they must have). A policy
file that is missing or broken denies everything: a security plugin fails
closed. Responses are always allowed.

Run: `POLICY_FILE=policy.json python -m dockyard.sdk run plugins/authz_policy.py:PolicyPlugin
--name policy`, then start the engine with `--authorization-plugin=policy`.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from typing import Any

from dockyard.sdk import AuthzPlugin, AuthzRequest, allow, deny, run

_VERSION = re.compile(r"^/v\d+(\.\d+)?(?=/)")
_MISSING = object()


def _lookup(document: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(document, dict) or key not in document:
            return _MISSING
        document = document[key]
    return document


class Policy:
    def __init__(self, data: dict[str, Any]) -> None:
        if data.get("default", "allow") not in ("allow", "deny"):
            raise ValueError("default must be allow or deny")
        self.default = data.get("default", "allow")
        self.rules = []
        for rule in data.get("rules") or []:
            if rule.get("action") not in ("allow", "deny"):
                raise ValueError(f"rule {rule!r}: action must be allow or deny")
            compiled = dict(rule)
            compiled["path_re"] = re.compile(rule["path"]) if rule.get("path") else None
            self.rules.append(compiled)

    def decide(self, req: AuthzRequest) -> tuple[bool, str]:
        # The engine sends the raw request target and routes on its decoded path:
        # match that, or `/%69mages/x` would slip past a rule on `^/images/`.
        path = _VERSION.sub("", urllib.parse.unquote(urllib.parse.urlsplit(req.request_uri).path))
        body: Any = None
        for rule in self.rules:
            if rule.get("methods") and req.request_method not in rule["methods"]:
                continue
            if rule["path_re"] is not None and not rule["path_re"].search(path):
                continue
            if rule.get("users") and req.user not in rule["users"]:
                continue
            if rule.get("body"):
                if body is None:
                    try:
                        body = json.loads(req.request_body) if req.request_body else {}
                    except ValueError:
                        body = {}
                if any(_lookup(body, k) != v for k, v in rule["body"].items()):
                    continue
            return rule["action"] == "allow", rule.get("message", "denied by policy")
        return self.default == "allow", "denied by the default policy"


class PolicyPlugin(AuthzPlugin):
    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get("POLICY_FILE", "/etc/dockyard/authz-policy.json")
        self._stamp: tuple[float, int] | None = None
        self._policy: Policy | None = None
        self._error = ""

    def policy(self) -> Policy | None:
        try:
            st = os.stat(self.path)
        except OSError as e:
            self._policy, self._stamp, self._error = None, None, f"policy file: {e.strerror}"
            return None
        stamp = (st.st_mtime, st.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                with open(self.path) as f:
                    self._policy, self._error = Policy(json.load(f)), ""
            except (OSError, ValueError, KeyError, re.error) as e:
                self._policy, self._error = None, f"policy file {self.path} is invalid: {e}"
        return self._policy

    def authorize_request(self, req: AuthzRequest) -> Any:
        policy = self.policy()
        if policy is None:
            return deny(self._error)
        allowed, message = policy.decide(req)
        return allow() if allowed else deny(message)


if __name__ == "__main__":
    run(PolicyPlugin(), os.environ.get("PLUGIN_NAME", "policy"))
