"""Showing a JSON progress stream (pull, push, load) the way the docker CLI does.

On a terminal every layer gets a line with a progress bar (rich, imported
only here and only then); otherwise each status change prints one plain
line (`a3ed95caeb02: Pull complete`), as docker prints into a pipe.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any


class StreamError(Exception):
    """The daemon reported an error inside the stream."""


def show(messages: Iterator[dict[str, Any]], *, quiet: bool = False) -> list[dict[str, Any]]:
    """Render the messages; returns their `aux` results. Raises StreamError on an error."""
    if quiet:
        return _collect(messages)
    if sys.stdout.isatty():
        return _bars(messages)
    return _lines(messages)


def _check(message: dict[str, Any]) -> None:
    if "error" in message or "errorDetail" in message:
        detail = message.get("errorDetail") or {}
        raise StreamError(detail.get("message") or message.get("error") or "unknown error")


def _collect(messages: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    aux = []
    for message in messages:
        _check(message)
        if "aux" in message:
            aux.append(message["aux"])
    return aux


def _lines(messages: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    aux = []
    last: dict[str, str] = {}
    for message in messages:
        _check(message)
        if "aux" in message:
            aux.append(message["aux"])
            continue
        if "stream" in message:
            sys.stdout.write(message["stream"])
            continue
        status = message.get("status", "")
        item = message.get("id")
        if item:
            if last.get(item) == status:
                continue
            last[item] = status
            print(f"{item}: {status}", flush=True)
        elif status:
            print(status, flush=True)
    return aux


_DONE = ("Pull complete", "Already exists", "Pushed", "Layer already exists", "Mounted from")


def _bars(messages: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    from rich.progress import BarColumn, Progress, TaskID, TextColumn

    from dockyard.units import human_size

    aux = []
    tasks: dict[str, TaskID] = {}
    later: list[str] = []  # status lines that come once the bars are drawn go below them
    with Progress(
        TextColumn("{task.fields[item]}: {task.description:<22}"),
        BarColumn(bar_width=40),
        TextColumn("{task.fields[bytes]}"),
    ) as progress:
        for message in messages:
            _check(message)
            if "aux" in message:
                aux.append(message["aux"])
                continue
            if "stream" in message:
                progress.console.print(message["stream"], end="", markup=False)
                continue
            status = message.get("status", "")
            item = message.get("id")
            if not item or "progressDetail" not in message:
                line = f"{item}: {status}" if item else status
                if tasks:
                    later.append(line)
                else:
                    progress.console.print(line, markup=False)
                continue
            detail = message.get("progressDetail") or {}
            if item not in tasks:
                tasks[item] = progress.add_task(status, item=item, total=None, bytes="")
            task = tasks[item]
            if "current" in detail:
                total = detail.get("total") or None
                shown = human_size(detail["current"]) + (f"/{human_size(total)}" if total else "")
                progress.update(
                    task, description=status, total=total, completed=detail["current"], bytes=shown
                )
            elif status.startswith(_DONE):
                total = progress.tasks[task].total or 1
                progress.update(task, description=status, total=total, completed=total)
            else:
                progress.update(task, description=status)
    for line in later:
        print(line)
    return aux
