"""The receiving end of fsutil's DiffCopy (`buildkit.filesync`) against a sender written
here the way fsutil's is: STAT packets in walk order with an ID for every entry, file
data on request (several files interleaved, in chunks), FIN answered with FIN."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from dockyard.buildkit import filesync
from dockyard.buildkit.filesync import DATA, ERR, FIN, REQ, STAT, Packet
from dockyard.buildkit.pb import stat_pb2
from dockyard.errors import InvalidArgument

CHUNK = 7  # small, so that files take several DATA packets


class Pipe:
    """One direction of an in-memory call."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()


class End:
    """One end of an in-memory bidirectional call (what `filesync.receive` reads)."""

    def __init__(self, incoming: Pipe, outgoing: Pipe) -> None:
        self.incoming = incoming
        self.outgoing = outgoing
        self.sent: list[Packet] = []

    @property
    def ready(self) -> bool:
        return not self.incoming.queue.empty()

    async def send(self, message: bytes | Packet) -> None:
        """Bytes as `receive` sends them; the test's sender may pass packets."""
        if isinstance(message, Packet):
            message = message.SerializeToString()
        packet = Packet()
        packet.ParseFromString(message)
        self.sent.append(packet)
        await self.outgoing.queue.put(message)

    async def recv(self) -> bytes | None:
        message = await self.incoming.queue.get()
        if message is None:
            self.incoming.queue.put_nowait(None)
        return message

    async def close(self) -> None:
        await self.outgoing.queue.put(None)


def pair() -> tuple[End, End]:
    a, b = Pipe(), Pipe()
    return End(a, b), End(b, a)


def walk(root: Path) -> list[stat_pb2.Stat]:
    """fsutil's walk: names in byte order per directory, parents first, hard links to
    the first path of their inode."""
    stats: list[stat_pb2.Stat] = []
    inodes: dict[int, str] = {}

    def visit(directory: Path, prefix: str) -> None:
        for name in sorted(os.listdir(directory), key=os.fsencode):
            full = directory / name
            rel = f"{prefix}{name}"
            st = os.lstat(full)
            entry = stat_pb2.Stat(
                path=rel,
                mode=filesync.go_mode(st),
                uid=st.st_uid,
                gid=st.st_gid,
                modTime=st.st_mtime_ns,
            )
            if stat.S_ISLNK(st.st_mode):
                entry.linkname = os.readlink(full)
            if stat.S_ISREG(st.st_mode):
                entry.size = st.st_size
                if st.st_nlink > 1 and st.st_ino in inodes:
                    entry.linkname = inodes[st.st_ino]
                    entry.size = 0
                else:
                    inodes[st.st_ino] = rel
            stats.append(entry)
            if stat.S_ISDIR(st.st_mode):
                visit(full, rel + "/")

    visit(root, "")
    return stats


async def send_tree(end: End, root: Path, stats: list[stat_pb2.Stat] | None = None) -> None:
    """The sender: STATs, then data for each REQ (files interleaved), FIN for FIN."""
    stats = walk(root) if stats is None else stats
    files = {i: s.path for i, s in enumerate(stats) if filesync.can_request_data(s.mode)}

    async def walker() -> None:
        for entry in stats:
            await end.send(Packet(type=STAT, stat=entry).SerializeToString())
        await end.send(Packet(type=STAT).SerializeToString())

    async def send_file(number: int) -> None:
        data = (root / files.pop(number)).read_bytes()
        for start in range(0, len(data), CHUNK):
            await end.send(Packet(type=DATA, ID=number, data=data[start : start + CHUNK]))
            await asyncio.sleep(0)  # let other files' chunks in between
        await end.send(Packet(type=DATA, ID=number).SerializeToString())

    sending: list[asyncio.Task[None]] = []
    walking = asyncio.create_task(walker())
    try:
        while (message := await end.recv()) is not None:
            packet = Packet()
            packet.ParseFromString(message)
            if packet.type == REQ:
                sending.append(asyncio.create_task(send_file(packet.ID)))
            elif packet.type == FIN:
                await asyncio.gather(walking, *sending)
                await end.send(Packet(type=FIN).SerializeToString())
                break
            elif packet.type == ERR:
                break
    finally:
        walking.cancel()
        for task in sending:
            task.cancel()
        await end.close()


def transfer(
    source: Path, dest: Path, staging: Path, sender: Callable[[End], Awaitable[None]] | None = None
) -> tuple[filesync.Receiver, End]:
    async def run() -> tuple[filesync.Receiver, End]:
        receiver_end, sender_end = pair()
        send = sender(sender_end) if sender else send_tree(sender_end, source)
        sending = asyncio.create_task(send)
        try:
            receiver = await filesync.receive(receiver_end, str(dest), str(staging))
        finally:
            await receiver_end.close()
            await sending
        return receiver, receiver_end

    dest.mkdir(exist_ok=True)
    staging.mkdir(exist_ok=True)
    return asyncio.run(run())


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | str, int]]:
    """Everything a build can see of a tree: type, mode, content or target, mtime."""
    found: dict[str, tuple[str, int, bytes | str, int]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(directory) / name
            rel = str(full.relative_to(root))
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", mode, b"", 0)
            elif stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", 0, os.readlink(full), 0)
            else:
                found[rel] = ("file", mode, full.read_bytes(), st.st_mtime_ns)
    return found


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "app" / "lib").mkdir(parents=True)
    (root / "app" / "main.py").write_text("print('hello')\n")
    (root / "app" / "lib" / "util.py").write_text("x = 1\n" * 50)
    (root / "app.txt").write_text("after the directory app in byte order\n")
    (root / "empty").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(300_000))
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o4755)
    (root / "outside").symlink_to("../../etc/passwd")
    (root / "absolute").symlink_to("/etc/shadow")
    os.link(root / "app" / "main.py", root / "hardlink")
    os.utime(root / "app.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return root


def test_a_tree_arrives_whole_with_modes_links_and_times(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    receiver, end = transfer(tree, dest, tmp_path / "staging")

    assert snapshot(dest) == snapshot(tree)
    assert os.stat(dest / "run.sh").st_mode & 0o7777 == 0o4755
    # symlinks are written as links, never followed
    assert os.readlink(dest / "outside") == "../../etc/passwd"
    assert os.readlink(dest / "absolute") == "/etc/shadow"
    # a hard link is made as one, not sent again
    assert os.stat(dest / "hardlink").st_ino == os.stat(dest / "app" / "main.py").st_ino
    requested = [p.ID for p in end.sent if p.type == REQ]
    assert len(requested) == 6  # the regular files other than the hard link
    assert [p.type for p in end.sent][-1] == FIN
    assert receiver.files_written == 6
    assert receiver.received == sum(
        (tree / p).stat().st_size
        for p in ("app/main.py", "app/lib/util.py", "app.txt", "empty", "big.bin", "run.sh")
    )
    assert os.listdir(tmp_path / "staging") == []


def test_a_second_transfer_asks_only_for_what_changed(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    transfer(tree, dest, tmp_path / "staging")

    (tree / "app" / "lib" / "util.py").write_text("x = 2\n")
    (tree / "empty").unlink()
    (tree / "new.txt").write_text("new\n")
    os.chmod(tree / "app.txt", 0o600)  # metadata alone counts as a change
    _, end = transfer(tree, dest, tmp_path / "staging")

    stats = walk(tree)
    requested = {stats[p.ID].path for p in end.sent if p.type == REQ}
    assert requested == {"app/lib/util.py", "new.txt", "app.txt"}
    assert snapshot(dest) == snapshot(tree)
    assert not (dest / "empty").exists()


def test_entries_that_change_type_replace_what_was_there(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    transfer(tree, dest, tmp_path / "staging")

    (tree / "app.txt").unlink()
    (tree / "app.txt").mkdir()  # file -> directory
    (tree / "app.txt" / "inner").write_text("inner\n")
    for path in (tree / "app").rglob("*"):
        if path.is_file():
            path.unlink()
    (tree / "app" / "lib").rmdir()
    (tree / "app").rmdir()
    (tree / "app").write_text("directory -> file\n")
    (tree / "outside").unlink()
    (tree / "outside").write_text("symlink -> file\n")
    (tree / "hardlink").unlink()
    transfer(tree, dest, tmp_path / "staging")

    assert snapshot(dest) == snapshot(tree)


def stats_of(*entries: tuple[str, int] | tuple[str, int, str]) -> list[stat_pb2.Stat]:
    found = []
    for entry in entries:
        path, mode = entry[0], entry[1]
        linkname = entry[2] if len(entry) == 3 else ""
        found.append(stat_pb2.Stat(path=path, mode=mode, linkname=linkname, modTime=1))
    return found


DIR = filesync.GO_DIR | 0o755
LINK = filesync.GO_SYMLINK | 0o777
FILE = 0o644


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("../escape", FILE)], "outside the directory"),
        ([("/etc/passwd", FILE)], "invalid path"),
        ([("a", DIR), ("a/../b", FILE)], "invalid path"),
        ([("a", DIR), ("a/./b", FILE)], "invalid path"),
        ([("", FILE)], "invalid path"),
        ([("b", FILE), ("a", FILE)], "out of order"),
        ([("a", FILE), ("a", FILE)], "out of order"),
        ([("a/b", FILE)], "out of order"),  # a child before its directory
        ([("link", LINK, "/etc"), ("link/passwd", FILE)], "its directory was not sent"),
        ([("x", FILE), ("y", FILE, "../../etc/passwd")], "invalid hard link"),
        ([("y", FILE, "nothing")], "no such file was sent before it"),
    ],
)
def test_entries_that_break_the_rules_end_the_transfer(
    tmp_path: Path, entries: list[tuple[str, int] | tuple[str, int, str]], message: str
) -> None:
    outside = tmp_path / "etc"
    outside.mkdir()
    dest = tmp_path / "dest"

    async def sender(end: End) -> None:
        for entry in stats_of(*entries):
            await end.send(Packet(type=STAT, stat=entry).SerializeToString())
        await end.send(Packet(type=STAT).SerializeToString())
        # answer requests with empty files until the receiver gives up
        while (message := await end.recv()) is not None:
            packet = Packet()
            packet.ParseFromString(message)
            if packet.type == REQ:
                await end.send(Packet(type=DATA, ID=packet.ID).SerializeToString())
            elif packet.type in (ERR, FIN):
                break
        await end.close()

    with pytest.raises(InvalidArgument) as raised:
        transfer(tmp_path, dest, tmp_path / "staging", sender)
    assert message in raised.value.message
    assert list(outside.iterdir()) == []


def test_the_receiver_tells_the_sender_why_it_stopped(tmp_path: Path) -> None:
    told: list[str] = []

    async def sender(end: End) -> None:
        await end.send(Packet(type=STAT, stat=stats_of(("../x", FILE))[0]).SerializeToString())
        while (message := await end.recv()) is not None:
            packet = Packet()
            packet.ParseFromString(message)
            if packet.type == ERR:
                told.append(packet.data.decode())
                break
        await end.close()

    with pytest.raises(InvalidArgument):
        transfer(tmp_path, tmp_path / "dest", tmp_path / "staging", sender)
    assert told and "outside the directory" in told[0]


def test_an_error_from_the_sender_ends_the_transfer_with_its_text(tmp_path: Path) -> None:
    async def sender(end: End) -> None:
        await end.send(Packet(type=ERR, data=b"open secret.txt: permission denied"))
        await end.close()

    with pytest.raises(filesync.TransferError) as raised:
        transfer(tmp_path, tmp_path / "dest", tmp_path / "staging", sender)
    assert raised.value.message == "error from sender: open secret.txt: permission denied"


def test_data_for_a_file_not_asked_for_is_refused(tmp_path: Path) -> None:
    async def sender(end: End) -> None:
        await end.send(Packet(type=STAT, stat=stats_of(("a", FILE))[0]))
        await end.send(Packet(type=DATA, ID=5, data=b"unasked"))
        await end.close()

    with pytest.raises(InvalidArgument) as raised:
        transfer(tmp_path, tmp_path / "dest", tmp_path / "staging", sender)
    assert raised.value.message == "invalid file request 5"


def test_a_sender_that_stops_early_fails_the_transfer(tmp_path: Path) -> None:
    async def sender(end: End) -> None:
        await end.send(Packet(type=STAT, stat=stats_of(("a", FILE))[0]))
        await end.close()

    with pytest.raises(filesync.TransferError) as raised:
        transfer(tmp_path, tmp_path / "dest", tmp_path / "staging", sender)
    assert "before it was complete" in raised.value.message


def test_devices_and_pipes_are_left_out(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    os.mkfifo(source / "pipe")
    (source / "z").write_text("kept\n")
    dest = tmp_path / "dest"
    _, end = transfer(source, dest, tmp_path / "staging")
    assert sorted(os.listdir(dest)) == ["z"]
    # IDs count every entry: the file is the second one
    assert [p.ID for p in end.sent if p.type == REQ] == [1]


def test_request_metadata_repeats_keys_and_escapes_what_is_not_ascii() -> None:
    assert filesync.request_metadata(
        "dockerfile", follow=["Dockerfile", "Dockerfile.dockerignore"]
    ) == [
        ("followpaths", "Dockerfile"),
        ("followpaths", "Dockerfile.dockerignore"),
        ("dir-name", "dockerfile"),
    ]
    assert filesync.request_metadata("context", exclude=["*.tmp", "café/ü x"]) == [
        ("exclude-patterns", "%2A.tmp"),
        ("exclude-patterns", "caf%C3%A9%2F%C3%BC+x"),
        ("exclude-patterns-encoded", "1"),
        ("dir-name", "context"),
    ]


def test_a_link_copy_shares_files_and_keeps_them_when_the_mirror_changes(
    tree: Path, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    transfer(tree, mirror, tmp_path / "staging")
    copy = tmp_path / "copy"
    filesync.link_copy(str(mirror), str(copy))
    before = snapshot(copy)
    assert before == snapshot(tree)

    (tree / "app" / "main.py").write_text("print('changed')\n")
    transfer(tree, mirror, tmp_path / "staging")
    assert (mirror / "app" / "main.py").read_text() == "print('changed')\n"
    assert snapshot(copy) == before  # replaced by rename, never rewritten in place
