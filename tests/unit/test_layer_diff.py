"""Layer diffs from an overlay upper directory (layers.diff; spec §3.3-3.5, LAY-9/10, BLD-13).

The upper and lower directories are made by hand in overlay's form (0/0
character devices for whiteouts, `trusted.overlay.opaque` for opaque
directories), as a container's run leaves them. Needs root.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dockyard.layers import diff
from dockyard.layers.apply import apply_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, trusted xattrs)")

T = 1_600_000_000


def write(path: Path, data: str = "", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    path.chmod(mode)
    os.utime(path, (T, T))
    return path


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, 0)


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    lower = tmp_path / "lower"
    write(lower / "etc" / "passwd", "root:x:0:0::/root:/bin/sh\n")
    write(lower / "etc" / "old", "old")
    write(lower / "data" / "a", "a")
    write(lower / "data" / "b", "b")
    (lower / "keep").mkdir(mode=0o755)
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    write(upper / "etc" / "passwd", "root:x:0:0::/root:/bin/bash\n")
    whiteout(upper / "etc" / "old")
    (upper / "data").mkdir()
    os.setxattr(upper / "data", diff.OPAQUE_XATTR, b"y")
    write(upper / "data" / "new", "fresh")
    f = write(upper / "new" / "f", "linked", mode=0o4755)
    os.link(f, upper / "new" / "g")
    os.symlink("f", upper / "new" / "l")
    os.setxattr(f, "security.capability", b"\x01\x00\x00\x02" + b"\x00" * 16)
    # what the runtime leaves: mountpoint stubs the image lacked, and a copied-up
    # directory whose only change is its times
    (upper / "proc").mkdir()
    write(upper / "etc" / "hosts", "")
    (upper / "keep").mkdir(mode=0o755)
    return upper, lower


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [m.name for m in tar.getmembers()]


def test_tar_has_docker_form_in_sorted_order(trees: tuple[Path, Path]) -> None:
    upper, lower = trees
    out = io.BytesIO()
    result = diff.write_tar(diff.scan(str(upper), [str(lower)]), out)
    # (tarfile drops the "/" that directory names carry in the archive)
    assert b"data/\x00" in out.getvalue()
    assert names(out.getvalue()) == [
        "data",
        "data/.wh..wh..opq",
        "data/new",
        "etc",
        "etc/.wh.old",
        "etc/passwd",
        "new",
        "new/f",
        "new/g",
        "new/l",
    ]
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["new/g"].islnk() and members["new/g"].linkname == "new/f"
        assert members["new/l"].issym() and members["new/l"].linkname == "f"
        assert members["etc/.wh.old"].isreg() and members["etc/.wh.old"].size == 0
        assert members["new/f"].mode == 0o4755
        assert "SCHILY.xattr.security.capability" in members["new/f"].pax_headers
        assert all(m.uname == "" and m.gname == "" for m in members.values())
        assert not any("overlay" in k for m in members.values() for k in m.pax_headers)
    assert result.size == len("fresh") + len("linked") + len("root:x:0:0::/root:/bin/bash\n")


def test_the_same_tree_gives_the_same_bytes(trees: tuple[Path, Path]) -> None:
    upper, lower = trees
    first, second = io.BytesIO(), io.BytesIO()
    diff.write_tar(diff.scan(str(upper), [str(lower)]), first)
    diff.write_tar(diff.scan(str(upper), [str(lower)]), second)
    assert first.getvalue() == second.getvalue()


def test_changes_list_like_docker_diff(trees: tuple[Path, Path]) -> None:
    upper, lower = trees
    changes = diff.changes(diff.scan(str(upper), [str(lower)]), [str(lower)])
    assert changes == [
        ("/data", diff.CHANGE_MODIFIED),
        ("/data/new", diff.CHANGE_ADDED),
        ("/etc", diff.CHANGE_MODIFIED),
        ("/etc/old", diff.CHANGE_DELETED),
        ("/etc/passwd", diff.CHANGE_MODIFIED),
        ("/new", diff.CHANGE_ADDED),
        ("/new/f", diff.CHANGE_ADDED),
        ("/new/g", diff.CHANGE_ADDED),
        ("/new/l", diff.CHANGE_ADDED),
    ]


def test_a_stub_the_image_already_has_is_a_real_change(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    write(lower / "etc" / "hosts", "127.0.0.1 localhost\n")
    write(upper / "etc" / "hosts", "")  # emptied by the step: a change, not a stub
    changes = diff.scan(str(upper), [str(lower)])
    assert [e.path for e in changes] == ["etc", "etc/hosts"]


def test_nothing_but_noise_is_an_empty_changeset(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (upper / "etc").mkdir(parents=True)
    write(upper / "etc" / "resolv.conf", "")
    for name in ("proc", "sys", "dev"):
        (upper / name).mkdir()
    changes = diff.scan(str(upper), [str(lower)])
    assert changes.empty
    diff.prune(changes)
    assert os.listdir(upper) == []


def test_opaque_and_whiteout_hide_lower_paths(tmp_path: Path) -> None:
    top, bottom = tmp_path / "top", tmp_path / "bottom"
    write(bottom / "a" / "x", "x")
    write(bottom / "gone", "g")
    (top / "a").mkdir(parents=True)
    os.setxattr(top / "a", diff.OPAQUE_XATTR, b"y")
    whiteout(top / "gone")
    view = diff.LowerView([str(top), str(bottom)])
    assert view.lstat("a") is not None
    assert view.lstat("a/x") is None
    assert view.lstat("gone") is None


def test_tar_applies_back_to_the_pruned_upper(trees: tuple[Path, Path], tmp_path: Path) -> None:
    upper, lower = trees
    changes = diff.scan(str(upper), [str(lower)])
    out = io.BytesIO()
    diff.write_tar(changes, out)
    diff.prune(changes)
    target = tmp_path / "applied"
    target.mkdir()
    out.seek(0)
    apply_layer(out, str(target), lowers=[str(lower)])
    assert snapshot(target) == snapshot(upper)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes | str | None]]:
    found: dict[str, tuple[int, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            content: bytes | str | None = None
            if stat.S_ISREG(st.st_mode):
                content = path.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            mode = stat.S_IFMT(st.st_mode) if stat.S_ISCHR(st.st_mode) else st.st_mode
            found[str(path.relative_to(root))] = (mode, st.st_nlink, content)
    return found
