"""Bridges between asyncio byte streams and blocking readers and writers.

Blocking work (tar extraction, hashing) runs in worker threads, while request
bodies arrive on the event loop. `consume_in_thread` pipes an async byte
iterator into a real pipe whose read end a blocking function reads, with flow
control, so large uploads are never held in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import BinaryIO, TypeVar

T = TypeVar("T")


async def consume_in_thread(source: AsyncIterator[bytes], consumer: Callable[[BinaryIO], T]) -> T:
    """Run `consumer(reader)` in a thread while `source` feeds the reader."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=1 << 20)
    write_file = os.fdopen(write_fd, "wb", buffering=0)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, write_file
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)

    def run() -> T:
        try:
            return consumer(reader)
        finally:
            # Drain what the consumer did not want, so the feeder never blocks.
            while reader.read(1 << 20):
                pass
            reader.close()

    task = loop.run_in_executor(None, run)
    try:
        try:
            async for chunk in source:
                if task.done():
                    break
                writer.write(chunk)
                await writer.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            writer.close()
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # A thread cannot be cancelled: let the consumer see the end of its input
        # and finish before unwinding, so nothing it stores lands after the
        # caller has already cleaned up.
        with contextlib.suppress(BaseException):
            await task
        raise


async def iterate_blocking(reader: Callable[[], bytes]) -> AsyncIterator[bytes]:
    """Yield chunks from a blocking `reader()` (returns b'' at the end) run in a thread."""
    loop = asyncio.get_running_loop()
    while True:
        chunk = await loop.run_in_executor(None, reader)
        if not chunk:
            return
        yield chunk


async def produce_in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Yield what a blocking generator produces, each step run in a worker thread.

    If the consumer stops early, the generator is closed (in a thread), so its
    files and clean-up run.
    """
    loop = asyncio.get_running_loop()
    done = object()
    try:
        while True:
            chunk = await loop.run_in_executor(None, next, chunks, done)
            if chunk is done:
                return
            yield chunk  # type: ignore[misc]
    finally:
        await loop.run_in_executor(None, chunks.close)  # type: ignore[attr-defined]


async def in_thread(fn: Callable[[], T], undo: Callable[[T], object]) -> T:
    """Run `fn()` in a worker thread; if the caller is cancelled, undo what it made.

    A thread cannot be stopped, so a cancelled caller returns at once while
    the thread runs to its end; `undo` is then applied to its result (in a
    thread), so nothing made for a cancelled operation outlives it.
    """
    loop = asyncio.get_running_loop()
    lock = threading.Lock()
    state = {"cancelled": False, "finished": False}

    def run() -> T:
        result = fn()
        with lock:
            state["finished"] = True
            if state["cancelled"]:
                undo(result)
        return result

    future = loop.run_in_executor(None, run)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with lock:
            state["cancelled"] = True
            finished = state["finished"]
        if finished:
            future.add_done_callback(
                lambda f: (
                    None
                    if f.cancelled() or f.exception()
                    else loop.run_in_executor(None, undo, f.result())
                )
            )
        raise
