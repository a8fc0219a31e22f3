"""A connection to a container monitor's attach socket.

Each connection receives every byte the container writes from then on, as
packets whose first byte names the stream (see `monitor`); whatever is written
to it goes to the container's stdin. Several connections may be open at once.
"""

from __future__ import annotations

import asyncio
import os
import socket

from dockyard.runtime.monitor import STDERR, STDOUT

PACKET = 8193  # conmon's stdio buffer plus the stream byte


class AttachConnection:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, path: str) -> AttachConnection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        # The socket path can exceed sun_path's 108 bytes; reach it through its directory.
        dir_fd = os.open(os.path.dirname(path), os.O_PATH)
        try:
            await asyncio.get_running_loop().sock_connect(
                sock, f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}"
            )
        except OSError:
            sock.close()
            raise
        finally:
            os.close(dir_fd)
        return cls(sock)

    async def read(self) -> tuple[int, bytes] | None:
        """The next chunk of output as (1 for stdout / 2 for stderr, data); None at the end."""
        while True:
            try:
                packet = await self._loop.sock_recv(self._sock, PACKET)
            except (ConnectionResetError, OSError):
                return None
            if not packet:
                return None
            stream = packet[0]
            if len(packet) > 1 and stream in (STDOUT, STDERR):
                return (1 if stream == STDOUT else 2), packet[1:]

    async def write(self, data: bytes) -> None:
        for start in range(0, len(data), PACKET - 1):
            await self._loop.sock_sendall(self._sock, data[start : start + PACKET - 1])

    def close_stdin(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()
