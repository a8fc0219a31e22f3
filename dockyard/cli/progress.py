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
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn

    aux = []
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.fields[item]}: {task.description:<18}"),
        BarColumn(bar_width=40),
        DownloadColumn(),
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
            if not item:
                progress.console.print(status, markup=False)
                continue
            detail = message.get("progressDetail") or {}
            if item not in tasks:
                tasks[item] = progress.add_task(status, item=item, total=None)
            task = tasks[item]
            if status.startswith(_DONE):
                total = progress.tasks[task].total or 1
                progress.update(task, description=status, total=total, completed=total)
            elif "current" in detail:
                progress.update(
                    task,
                    description=status,
                    total=detail.get("total") or None,
                    completed=detail["current"],
                )
            else:
                progress.update(task, description=status)
    return aux
