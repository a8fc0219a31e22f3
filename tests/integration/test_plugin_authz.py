"""Authorization plugins around every API request, with real daemons.

Plugins: the example policy plugin (SDK, a separate process) and recording
plugins written without the SDK.
"""

from __future__ import annotations

import base64
import io
import json
import signal
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bare_plugin import BarePlugin, Call, Raw
from tests.plugin_env import (
    EXAMPLES,
    PluginDaemon,
    PluginProcess,
    make_plugin_dir,
    sdk_plugin_config,
)


def _recorder(name: str, log: list[str], deny_path: str = "") -> BarePlugin:
    def request(call: Call) -> dict[str, object]:
        log.append(f"{name}:req")
        uri = call.json["RequestUri"]
        if deny_path and deny_path in uri:
            return {"Allow": False, "Msg": f"{name} says no"}
        return {"Allow": True}

    def response(call: Call) -> dict[str, object]:
        log.append(f"{name}:res")
        return {"Allow": True}

    return BarePlugin(
        ["authz"], {"/AuthZPlugin.AuthZReq": request, "/AuthZPlugin.AuthZRes": response}
    )


@pytest.fixture
def chain() -> Iterator[tuple[PluginDaemon, BarePlugin, BarePlugin, list[str]]]:
    daemon = PluginDaemon()
    log: list[str] = []
    a = _recorder("a", log, deny_path="/volumes").serve_unix(daemon.sock("a"))
    b = _recorder("b", log, deny_path="/networks").serve_unix(daemon.sock("b"))
    try:
        daemon.start_with("--authorization-plugin", "a", "--authorization-plugin", "b")
        yield daemon, a, b, log
    finally:
        daemon.cleanup()
        a.stop()
        b.stop()


def test_requests_pass_the_chain_in_order(
    chain: tuple[PluginDaemon, BarePlugin, BarePlugin, list[str]],
) -> None:
    daemon, a, _b, log = chain
    log.clear()
    status, body = daemon.api("GET", "/v1.45/version")
    assert status == 200 and body["ApiVersion"]
    assert log == ["a:req", "b:req", "a:res", "b:res"]
    request = a.calls_to("/AuthZPlugin.AuthZRes")[-1].json
    assert request["RequestMethod"] == "GET" and request["RequestUri"] == "/v1.45/version"
    assert request["ResponseStatusCode"] == 200
    assert json.loads(base64.b64decode(request["ResponseBody"]))["ApiVersion"] == body["ApiVersion"]
    assert request["ResponseHeaders"]["Content-Type"] == "application/json"


def test_a_deny_stops_the_chain_and_the_handler(
    chain: tuple[PluginDaemon, BarePlugin, BarePlugin, list[str]],
) -> None:
    daemon, _a, _b, log = chain
    log.clear()
    status, body = daemon.api("GET", "/v1.45/volumes")
    assert status == 403
    assert body == {"message": "authorization denied by plugin a: a says no"}
    assert log == ["a:req"]
    log.clear()
    status, body = daemon.api("GET", "/v1.45/networks?filters=%7B%7D")
    assert (status, body["message"]) == (403, "authorization denied by plugin b: b says no")
    assert log == ["a:req", "b:req"]
    # the docker CLI shows the message as it does for Docker
    result = daemon.docker("network", "ls")
    assert result.returncode != 0
    assert "authorization denied by plugin b: b says no" in result.stderr


def test_request_details_sent_to_plugins(
    chain: tuple[PluginDaemon, BarePlugin, BarePlugin, list[str]],
) -> None:
    daemon, a, b, _log = chain
    status, _ = daemon.api(
        "POST",
        "/v1.45/containers/create?name=authz-probe",
        {"Image": "no-such-image:1"},
        headers={
            "Content-Type": "application/json",
            "X-Registry-Auth": "c2VjcmV0",
            "X-Custom": "1",
        },
    )
    assert status == 404  # the handler's own error still reaches the client
    sent = [
        c.json for c in a.calls_to("/AuthZPlugin.AuthZReq") if "authz-probe" in c.json["RequestUri"]
    ][-1]
    assert sent["RequestUri"] == "/v1.45/containers/create?name=authz-probe"
    assert json.loads(base64.b64decode(sent["RequestBody"])) == {"Image": "no-such-image:1"}
    assert sent["RequestHeaders"]["X-Custom"] == "1"
    assert "X-Registry-Auth" not in sent["RequestHeaders"]
    response = [
        c.json for c in b.calls_to("/AuthZPlugin.AuthZRes") if "authz-probe" in c.json["RequestUri"]
    ][-1]
    assert response["ResponseStatusCode"] == 404
    # /auth bodies (credentials) are never sent
    daemon.api(
        "POST",
        "/v1.45/auth",
        {"username": "u", "password": "p"},
        headers={"Content-Type": "application/json"},
    )
    auth = [
        c.json
        for c in a.calls_to("/AuthZPlugin.AuthZReq")
        if c.json["RequestUri"].endswith("/auth")
    ]
    assert auth and "RequestBody" not in auth[-1]


def test_a_plugin_that_goes_away_fails_requests_closed(
    chain: tuple[PluginDaemon, BarePlugin, BarePlugin, list[str]],
) -> None:
    daemon, _a, b, _log = chain
    b.stop()
    start = time.monotonic()
    status, body = daemon.api("GET", "/v1.45/containers/json")
    assert time.monotonic() - start < 10  # the retry window is 3 s in these daemons
    assert status == 500
    assert body["message"].startswith(
        "plugin b failed with error: AuthZPlugin.AuthZReq: connecting to unix://"
    )


def test_a_missing_plugin_stops_the_daemon_from_starting() -> None:
    daemon = PluginDaemon()
    try:
        with pytest.raises(
            RuntimeError, match='plugin "nothere" not found \\(no socket or spec file in '
        ):
            daemon.start_with("--authorization-plugin", "nothere")
    finally:
        daemon.cleanup()


def test_the_policy_example_plugin(tmp_path: Path, busybox_tar: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "default": "allow",
                "rules": [
                    {
                        "methods": ["POST"],
                        "path": "^/containers/create$",
                        "body": {"HostConfig.Privileged": True},
                        "action": "deny",
                        "message": "privileged containers are not allowed",
                    },
                    {
                        "methods": ["DELETE"],
                        "path": "^/images/",
                        "action": "deny",
                        "message": "ask the release team",
                    },
                ],
            }
        )
    )
    daemon = PluginDaemon()
    plugin = PluginProcess(
        f"{EXAMPLES}/authz_policy.py:PolicyPlugin",
        daemon.sock("policy"),
        {"POLICY_FILE": str(policy)},
    )
    try:
        daemon.start_with(authorization_plugins=["policy"])
        daemon.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
        ok = daemon.cli("run", "--rm", "demo/busybox:1", "echo", "allowed")
        assert ok.returncode == 0 and ok.stdout.strip() == "allowed"
        refused = daemon.cli("run", "--rm", "--privileged", "demo/busybox:1", "true")
        assert refused.returncode == 125
        assert (
            "authorization denied by plugin policy: privileged containers are not allowed"
            in refused.stderr
        )
        refused = daemon.docker("rmi", "demo/busybox:1")
        assert "authorization denied by plugin policy: ask the release team" in refused.stderr
        # the engine routes on the decoded path: so does the policy
        for path in ("/v1.45/%69mages/demo/busybox:1", "/v1.45/images/demo/busybox:1?force=1"):
            status, body = daemon.api("DELETE", path)
            assert (status, body["message"]) == (
                403,
                "authorization denied by plugin policy: ask the release team",
            )
        assert daemon.cli("images", "-q").stdout.strip()  # the image is still there
        policy.write_text("{broken")  # a broken policy fails closed
        time.sleep(0.05)
        denied = daemon.api("GET", "/v1.45/info")
        assert denied[0] == 403 and "is invalid" in denied[1]["message"]
    finally:
        policy.write_text(json.dumps({"default": "allow"}))
        daemon.cleanup()
        plugin.stop()


def _no_privileged(call: Call) -> dict[str, object]:
    """A policy: no privileged containers (judged on the body the plugin is shown)."""
    raw = call.json.get("RequestBody")
    try:
        # read as a Go plugin reads it: UTF-8 only
        body = json.loads(base64.b64decode(raw).decode("utf-8")) if raw else {}
    except ValueError:  # labelled JSON, but not (a build context, another encoding)
        body = {}
    if isinstance(body, dict) and (body.get("HostConfig") or {}).get("Privileged"):
        return {"Allow": False, "Msg": "no privileged containers"}
    return {"Allow": True}


@pytest.fixture
def guarded() -> Iterator[tuple[PluginDaemon, BarePlugin]]:
    daemon = PluginDaemon()
    guard = BarePlugin(
        ["authz"],
        {"/AuthZPlugin.AuthZReq": _no_privileged, "/AuthZPlugin.AuthZRes": {"Allow": True}},
    ).serve_unix(daemon.sock("guard"))
    try:
        daemon.start_with("--authorization-plugin", "guard")
        yield daemon, guard
    finally:
        daemon.cleanup()
        guard.stop()


def _raw_post(
    daemon: PluginDaemon, path: str, body: Any, headers: dict[str, str], *, decode: bool = True
) -> Any:
    """POST over the daemon's socket exactly as given (bytes, or chunks to send chunked);
    the status and the reply, decoded as one JSON document unless `decode` is false."""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(daemon.socket)

    conn = Conn("localhost", timeout=60)
    try:
        conn.request(
            "POST", path, body=body, headers=headers, encode_chunked=not isinstance(body, bytes)
        )
        resp = conn.getresponse()
        reply = resp.read()
        return resp.status, json.loads(reply or b"null") if decode else reply
    finally:
        conn.close()


def test_a_body_the_plugins_cannot_see_is_never_parsed(
    guarded: tuple[PluginDaemon, BarePlugin],
) -> None:
    daemon, _guard = guarded
    privileged = json.dumps(
        {"Image": "no-such-image:1", "HostConfig": {"Privileged": True}}
    ).encode()
    create = "/v1.45/containers/create?name=sneaky"
    status, body = _raw_post(daemon, create, privileged, {"Content-Type": "application/json"})
    assert (status, body["message"]) == (
        403,
        "authorization denied by plugin guard: no privileged containers",
    )
    status, body = _raw_post(
        daemon, create, privileged, {"Content-Type": "Application/JSON; charset=utf-8"}
    )
    assert status == 403
    # Another Content-Type hides the body from the plugins: the daemon must not parse it.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        status, body = _raw_post(daemon, create, privileged, {"Content-Type": content_type})
        assert (status, body["message"]) == (
            400,
            f"unsupported Content-Type header ({content_type}): must be 'application/json'",
        )
    # JSON is UTF-8, as the plugins (Go's decoder) read it: other encodings are refused.
    for encoding in ("utf-16-le", "utf-32", "utf-8-sig"):
        disguised = privileged.decode().encode(encoding)
        status, body = _raw_post(daemon, create, disguised, {"Content-Type": "application/json"})
        assert status == 400 and body["message"].startswith("invalid JSON"), (encoding, body)
    status, body = _raw_post(daemon, create, privileged, {})
    assert (status, body["message"]) == (
        400,
        "unsupported Content-Type header (): must be 'application/json'",
    )
    assert daemon.api("GET", "/v1.45/containers/json?all=1")[1] == []


def test_a_body_too_large_for_the_plugins_is_refused(
    guarded: tuple[PluginDaemon, BarePlugin],
) -> None:
    daemon, guard = guarded
    padding = "x" * (1 << 20)
    big = {
        "Image": "no-such-image:1",
        "Env": [f"PAD={padding}"],
        "HostConfig": {"Privileged": True},
    }
    data = json.dumps(big).encode()
    create = "/v1.45/containers/create?name=big"
    json_type = {"Content-Type": "application/json"}
    seen = len(guard.calls_to("/AuthZPlugin.AuthZReq"))
    # with a Content-Length, and chunked (no length to check before reading)
    for body in (data, iter([data[i : i + 65536] for i in range(0, len(data), 65536)])):
        status, reply = _raw_post(daemon, create, body, json_type)
        assert (status, reply["message"]) == (
            400,
            "request body is too large for authorization plugins (limit 1048576 bytes)",
        )
    assert len(guard.calls_to("/AuthZPlugin.AuthZReq")) == seen  # never judged without its body
    # up to 1 MiB the body is forwarded whole
    big["Env"] = [f"PAD={padding[: (1 << 20) - 200]}"]
    status, reply = _raw_post(daemon, create, json.dumps(big).encode(), json_type)
    assert (status, reply["message"]) == (
        403,
        "authorization denied by plugin guard: no privileged containers",
    )


def test_a_streamed_body_the_plugins_were_shown_still_reaches_the_handler(
    guarded: tuple[PluginDaemon, BarePlugin],
) -> None:
    # A build context sent as application/json is read whole for the plugins first.
    daemon, guard = guarded
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = b"FROM scratch\nLABEL made=through-authz\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    status, reply = _raw_post(
        daemon,
        "/v1.45/build?t=authz/ctx:1",
        context.getvalue(),
        {"Content-Type": "application/json"},
        decode=False,
    )
    assert status == 200, reply
    assert b"Successfully tagged authz/ctx:1" in reply, reply
    status, image = daemon.api("GET", "/v1.45/images/authz/ctx:1/json")
    assert status == 200 and image["Config"]["Labels"] == {"made": "through-authz"}
    shown = [c.json.get("RequestBody") for c in guard.calls_to("/AuthZPlugin.AuthZReq")]
    assert base64.b64encode(context.getvalue()).decode() in shown


def _reload(daemon: PluginDaemon, names: list[str]) -> None:
    assert daemon.proc is not None
    daemon.config["authorization-plugins"] = names
    daemon.config_file.write_text(json.dumps(daemon.config))
    daemon.proc.send_signal(signal.SIGHUP)


def _eventually(probe: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


def test_sighup_reloads_the_authorization_chain() -> None:
    daemon = PluginDaemon()
    log: list[str] = []
    a = _recorder("a", log, deny_path="/volumes").serve_unix(daemon.sock("a"))
    b = _recorder("b", log, deny_path="/networks").serve_unix(daemon.sock("b"))
    try:
        daemon.start_with(authorization_plugins=["a"])
        assert daemon.api("GET", "/v1.45/volumes")[0] == 403
        _reload(daemon, ["b"])
        _eventually(lambda: daemon.api("GET", "/v1.45/volumes")[0] == 200)
        status, body = daemon.api("GET", "/v1.45/networks")
        assert (status, body["message"]) == (403, "authorization denied by plugin b: b says no")
        # a chain naming a plugin that does not exist is refused: the running one stays
        _reload(daemon, ["nothere"])
        _eventually(lambda: "configuration not reloaded" in daemon.log_path.read_text())
        assert (
            'plugin "nothere" not found (no socket or spec file in ' in daemon.log_path.read_text()
        )
        assert daemon.api("GET", "/v1.45/networks")[0] == 403
        _reload(daemon, [])
        _eventually(lambda: daemon.api("GET", "/v1.45/networks")[0] == 200)
        log.clear()
        assert daemon.api("GET", "/v1.45/volumes")[0] == 200 and log == []
    finally:
        daemon.cleanup()
        a.stop()
        b.stop()


def test_a_disabled_managed_plugin_leaves_the_chain_by_any_name(
    tmp_path: Path, busybox_tar: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps({"rules": [{"path": "^/volumes$", "action": "deny", "message": "no volumes"}]})
    )
    config = sdk_plugin_config(
        "/dockyard/plugins/authz_policy.py:PolicyPlugin", "policy.sock", ["docker.authz/1.0"]
    )
    config["mounts"].append(
        {
            "source": str(policy),
            "destination": "/policy.json",
            "type": "bind",
            "options": ["rbind", "ro"],
        }
    )
    config["env"].append({"name": "POLICY_FILE", "value": "/policy.json"})
    daemon = PluginDaemon()
    try:
        daemon.start_with()
        plugin_dir = make_plugin_dir(tmp_path / "plugin", busybox_tar, config)
        daemon.cli("plugin", "create", "policy", str(plugin_dir), check=True)
        daemon.cli("plugin", "enable", "policy", check=True)
        _reload(daemon, ["policy"])  # the chain knows it without its tag
        _eventually(lambda: daemon.api("GET", "/v1.45/volumes")[0] == 403)
        assert daemon.api("GET", "/v1.45/volumes")[1]["message"] == (
            "authorization denied by plugin policy: no volumes"
        )
        daemon.cli("plugin", "disable", "policy:latest", check=True)
        # out of the chain: requests neither judged by it nor failed for want of it
        assert daemon.api("GET", "/v1.45/volumes")[0] == 200
        assert daemon.api("GET", "/v1.45/info")[0] == 200
    finally:
        daemon.cleanup()


def test_a_plugin_answering_an_error_fails_requests_closed() -> None:
    daemon = PluginDaemon()
    broken = BarePlugin(
        ["authz"],
        {
            # an error status wins over an "Allow": true in its body
            "/AuthZPlugin.AuthZReq": lambda call: (
                Raw(500, b'{"Allow": true, "Err": "policy store down"}')
                if "/volumes" in call.json["RequestUri"]
                else {"Allow": True}
            ),
            "/AuthZPlugin.AuthZRes": {"Allow": True},
        },
    ).serve_unix(daemon.sock("broken"))
    try:
        daemon.start_with("--authorization-plugin", "broken")
        status, body = daemon.api("GET", "/v1.45/volumes")
        assert (status, body["message"]) == (
            500,
            "plugin broken failed with error: AuthZPlugin.AuthZReq: policy store down",
        )
    finally:
        daemon.cleanup()
        broken.stop()
