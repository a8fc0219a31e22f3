"""Regenerate the BuildKit wire definitions and their Python messages.

Run from the repository root with any Python 3.11+ (root: it uses apt):

    python3 dockyard/buildkit/pb/regenerate.py

1. Downloads Debian trixie's `golang-github-docker-docker-dev` (moby's source with the
   BuildKit it vendors) and `golang-github-tonistiigi-fsutil-dev` with an apt of its own
   (private sources list, lists, cache and dpkg status in a temporary directory: the
   host's apt state and sources are not touched), and unpacks them.
2. Copies the .proto files Dockyard speaks into this directory, flattened, with the
   imports pointed at their copies here and the gogoproto options dropped: those only
   shape the Go code BuildKit generates (field names, nullability, custom Go types)
   and leave the wire format unchanged, and gogo.proto itself is not in the packages.
3. Runs protoc (from grpcio-tools, installed into a temporary virtualenv) to write
   `<name>_pb2.py` and `<name>_pb2.pyi` beside each .proto.

`status.proto` (google.rpc.Status) and `health.proto` (grpc.health.v1) are written here
by hand: the packages only import them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "dockyard/buildkit/pb"
GRPCIO_TOOLS = "grpcio-tools==1.85.4"
SUITE = "trixie"
DEBS = ("golang-github-docker-docker-dev", "golang-github-tonistiigi-fsutil-dev")
GOCODE = "usr/share/gocode/src"

# upstream path under GOCODE -> file name here
PROTOS = {
    "github.com/moby/buildkit/api/services/control/control.proto": "control.proto",
    "github.com/moby/buildkit/api/types/worker.proto": "worker.proto",
    "github.com/moby/buildkit/solver/pb/ops.proto": "ops.proto",
    "github.com/moby/buildkit/sourcepolicy/pb/policy.proto": "policy.proto",
    "github.com/moby/buildkit/util/apicaps/pb/caps.proto": "caps.proto",
    "github.com/moby/buildkit/frontend/gateway/pb/gateway.proto": "gateway.proto",
    "github.com/moby/buildkit/solver/errdefs/errdefs.proto": "errdefs.proto",
    "github.com/moby/buildkit/util/stack/stack.proto": "stack.proto",
    "github.com/moby/buildkit/session/filesync/filesync.proto": "filesync.proto",
    "github.com/moby/buildkit/session/auth/auth.proto": "auth.proto",
    "github.com/moby/buildkit/session/secrets/secrets.proto": "secrets.proto",
    "github.com/moby/buildkit/session/sshforward/ssh.proto": "ssh.proto",
    "github.com/moby/buildkit/session/upload/upload.proto": "upload.proto",
    "github.com/tonistiigi/fsutil/types/wire.proto": "wire.proto",
    "github.com/tonistiigi/fsutil/types/stat.proto": "stat.proto",
}
IMPORT_RENAMES = {
    "github.com/gogo/googleapis/google/rpc/status.proto": "status.proto",
    "stat.proto": "stat.proto",  # fsutil's wire.proto imports its sibling bare
    **{path: name for path, name in PROTOS.items()},
}
HAND_WRITTEN = ("status.proto", "health.proto")

_GOGO_IMPORT = re.compile(r'^import "github.com/gogo/protobuf/gogoproto/gogo.proto";\n', re.M)
_GOGO_FILE_OPTION = re.compile(r"^[ \t]*option \(gogoproto\.[a-z_]+\) = [a-z]+;\n", re.M)
# one `(gogoproto.x) = value` inside a field's [...] options, with its separating comma
_GOGO_FIELD_OPTION = re.compile(r'\s*\(gogoproto\.[a-z_]+\)\s*=\s*(?:"[^"]*"|[A-Za-z0-9_.]+)\s*,?')
_EMPTY_OPTIONS = re.compile(r"\s*\[\s*\]")
_TRAILING_COMMA = re.compile(r",\s*\]")
_IMPORT = re.compile(r'^import "([^"]+)";', re.M)


def rewrite(text: str) -> str:
    """An upstream .proto with gogoproto gone and imports pointing at the copies here."""
    text = _GOGO_IMPORT.sub("", text)
    text = _GOGO_FILE_OPTION.sub("", text)
    text = _GOGO_FIELD_OPTION.sub("", text)
    text = _TRAILING_COMMA.sub("]", text)
    text = _EMPTY_OPTIONS.sub("", text)

    def retarget(match: re.Match[str]) -> str:
        path = match.group(1)
        if path.startswith("google/protobuf/"):
            return match.group(0)
        return f'import "{PACKAGE}/{IMPORT_RENAMES[path]}";'

    text = _IMPORT.sub(retarget, text)
    if "gogoproto" in text:
        raise SystemExit("a gogoproto option was left behind; extend the patterns")
    return text


def apt_download(work: Path) -> Path:
    state = work / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True)
    (state / "status").touch()
    (state / "sources.list").write_text(
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        f"http://deb.debian.org/debian {SUITE} main\n"
    )
    options = [
        f"-o=Dir::Etc::SourceList={state / 'sources.list'}",
        "-o=Dir::Etc::SourceParts=/dev/null",
        f"-o=Dir::State::Lists={state / 'lists'}",
        f"-o=Dir::State::Status={state / 'status'}",
        f"-o=Dir::Cache={state / 'cache'}",
        "-o=APT::Sandbox::User=root",
    ]
    subprocess.run(["apt-get", "-q", *options, "update"], check=True)
    debs = work / "debs"
    debs.mkdir()
    subprocess.run(["apt-get", "-q", *options, "download", *DEBS], cwd=debs, check=True)
    root = work / "root"
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        print(deb.name)
    return root / GOCODE


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gocode = apt_download(work)
        for upstream, name in PROTOS.items():
            (HERE / name).write_text(rewrite((gocode / upstream).read_text()))
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, GRPCIO_TOOLS], check=True)
        repo = HERE.parents[2]
        names = sorted([*PROTOS.values(), *HAND_WRITTEN])
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "grpc_tools.protoc",
                f"-I{repo}",
                f"--python_out={repo}",
                f"--pyi_out={repo}",
                *(f"{PACKAGE}/{name}" for name in names),
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
