"""A log plugin writing each container's output to rotating files, and reading it back.

Every container gets `<LOG_DIR>/<container id>.log` (`LOG_DIR` defaults to
`/var/log/dockyard-containers`), one JSON object per line:
`{"time": <unix ns>, "stream": "stdout", "log": "...", "partial": false}`.
When a file reaches `max-size` (log option, default `10m`) it becomes `.1`, the
older ones shift, and at most `max-file` files (default 3) are kept. The
plugin serves ReadLogs, so `docker logs` / `dockyard logs` read these files
(tail, since, until and follow included).

    python -m dockyard.sdk run plugins/log_rotate.py:RotatingLogs --name rotate
    dockyard run --log-driver rotate --log-opt max-size=1m --log-opt max-file=5 IMAGE ...
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from dockyard.sdk import Info, LogEntry, LogPlugin, PartialMetadata, PluginError, run
from dockyard.sdk.log import ReadRequest

_SIZE = re.compile(r"^(\d+)([kmg]?)b?$", re.IGNORECASE)
_ZERO = "0001-01-01T00:00:00Z"


def parse_size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise PluginError(f"invalid max-size {text!r}")
    return (
        int(match.group(1))
        * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    )


def parse_time(text: str) -> int:
    if not text or text == _ZERO:
        return 0
    from datetime import datetime

    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


class _File:
    def __init__(self, path: str, max_size: int, max_files: int) -> None:
        self.path = path
        self.max_size = max_size
        self.max_files = max_files
        self.handle = open(path, "ab")  # noqa: SIM115 - kept open while logging

    def write(self, record: bytes) -> None:
        if self.handle.tell() + len(record) > self.max_size and self.handle.tell() > 0:
            self.rotate()
        self.handle.write(record)
        self.handle.flush()

    def rotate(self) -> None:
        self.handle.close()
        for index in range(self.max_files - 1, 0, -1):
            older = f"{self.path}.{index}"
            if index == self.max_files - 1 and os.path.exists(older):
                os.unlink(older)
            source = self.path if index == 1 else f"{self.path}.{index - 1}"
            if os.path.exists(source):
                os.rename(source, older)
        if self.max_files <= 1:
            os.unlink(self.path)
        self.handle = open(self.path, "ab")  # noqa: SIM115


class RotatingLogs(LogPlugin):
    def __init__(self, directory: str | None = None) -> None:
        super().__init__()
        self.directory = directory or os.environ.get("LOG_DIR", "/var/log/dockyard-containers")
        os.makedirs(self.directory, exist_ok=True)
        self.files: dict[str, _File] = {}

    def path(self, container_id: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{1,64}", container_id):
            raise PluginError(f"invalid container id {container_id!r}")
        return os.path.join(self.directory, container_id + ".log")

    def started(self, info: Info) -> None:
        max_size = parse_size(info.config.get("max-size", "10m"))
        max_files = int(info.config.get("max-file", "3"))
        if max_files < 1:
            raise PluginError("max-file must be at least 1")
        self.files[info.container_id] = _File(self.path(info.container_id), max_size, max_files)

    def log(self, info: Info, entry: LogEntry) -> None:
        meta = entry.partial_log_metadata
        record = {
            "time": entry.time_nano,
            "stream": entry.source,
            "log": entry.line.decode(errors="replace"),
            "partial": entry.partial and not (meta is not None and meta.last),
        }
        self.files[info.container_id].write(json.dumps(record).encode() + b"\n")

    def stopped(self, info: Info) -> None:
        file = self.files.pop(info.container_id, None)
        if file is not None:
            file.handle.close()

    def _records(self, container_id: str) -> list[dict[str, Any]]:
        base = self.path(container_id)
        paths = [f"{base}.{i}" for i in range(9, 0, -1)] + [base]
        records = []
        for path in paths:
            try:
                with open(path, "rb") as f:
                    records += [json.loads(line) for line in f if line.strip()]
            except FileNotFoundError:
                continue
        return records

    async def read_logs(self, req: ReadRequest) -> AsyncIterator[LogEntry]:
        since, until = parse_time(req.config.since), parse_time(req.config.until)
        records = [
            r
            for r in self._records(req.info.container_id)
            if r["time"] >= since and (not until or r["time"] <= until)
        ]
        if req.config.tail >= 0:
            records = list(deque(records, maxlen=req.config.tail)) if req.config.tail else []
        for r in records:
            yield _entry(r)
        if not req.config.follow:
            return
        path = self.path(req.info.container_id)
        seen = os.path.getsize(path) if os.path.exists(path) else 0
        while req.info.container_id in self.files or os.path.getsize(path) > seen:
            await asyncio.sleep(0.1)
            with open(path, "rb") as f:
                if os.path.getsize(path) < seen:
                    seen = 0  # rotated
                f.seek(seen)
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            seen += len(complete)
            for line in complete.splitlines():
                r = json.loads(line)
                if until and r["time"] > until:
                    return
                yield _entry(r)


def _entry(record: dict[str, Any]) -> LogEntry:
    partial = bool(record.get("partial"))
    return LogEntry(
        record["stream"],
        record["time"],
        record["log"].encode(),
        partial,
        PartialMetadata(last=False, id="", ordinal=0) if partial else None,
    )


if __name__ == "__main__":
    run(RotatingLogs(), os.environ.get("PLUGIN_NAME", "rotate"))
