"""Resolving `User` (`name`, `uid`, `name:group`, `uid:gid`) against the container's files."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard import rootpath
from dockyard.errors import InvalidArgument


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


def _table(root: str, path: str) -> list[list[str]]:
    text = rootpath.read_text(root, path) or ""
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve(root: str, spec: str, extra_groups: list[str] | None = None) -> User:
    user_part, _, group_part = (spec or "0").partition(":")
    passwd = _table(root, "/etc/passwd")
    groups = _table(root, "/etc/group")
    uid = gid = None
    home = "/"
    name = None
    for entry in passwd:
        if len(entry) < 6:
            continue
        if entry[0] == user_part or (user_part.isdigit() and entry[2] == user_part):
            name, uid, gid, home = entry[0], int(entry[2]), int(entry[3]), entry[5] or "/"
            break
    if uid is None:
        if not user_part.isdigit():
            raise InvalidArgument(
                f"unable to find user {user_part}: no matching entries in passwd file"
            )
        uid, gid = int(user_part), 0
    if group_part:
        gid = _group_id(groups, group_part)
    additional: list[int] = []
    if not group_part and name is not None:
        additional = [int(g[2]) for g in groups if len(g) >= 4 and name in g[3].split(",")]
    for extra in extra_groups or []:
        additional.append(_group_id(groups, extra))
    return User(uid, gid if gid is not None else 0, sorted(set(additional)), home)


def _group_id(groups: list[list[str]], group: str) -> int:
    for entry in groups:
        if len(entry) >= 3 and (entry[0] == group or entry[2] == group):
            return int(entry[2])
    if group.isdigit():
        return int(group)
    raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
