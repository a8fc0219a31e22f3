"""Dockerfile syntax: text to a list of instruction nodes.

This is the first of two passes (the second, `instructions`, gives each node
its meaning). It knows the file's layout and nothing of what instructions do:

* parser directives (`# syntax=`, `# escape=`, `# check=`) at the very top,
  each at most once, ended by the first line that is not one;
* comment lines (first non-blank character `#`), dropped even inside an
  instruction continued over several lines; blank lines;
* line continuations: the escape character (`\\`, or `` ` `` after
  `# escape=`) at the end of a line joins the next line;
* each instruction's flags (`--from=x`) and its arguments, split the way that
  instruction reads them: a JSON array of strings (exec form) or plain text
  (shell form) for RUN, CMD, ENTRYPOINT and SHELL; `key=value` pairs for ENV
  and LABEL; words for the others;
* heredocs (`<<EOF` ... `EOF`) after RUN, COPY and ADD, whose bodies follow
  the instruction's line.

Every error names the line it comes from, as Docker's parser does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from dockyard.build.expansion import Lexer
from dockyard.errors import InvalidArgument

DEFAULT_ESCAPE = "\\"
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC_INSTRUCTIONS = ("add", "copy", "run")

# How each instruction's arguments are split (see `_arguments`).
_FORMS = {
    "add": "json_or_words",
    "arg": "words",
    "cmd": "json_or_text",
    "copy": "json_or_words",
    "entrypoint": "json_or_text",
    "env": "pairs",
    "expose": "fields",
    "from": "fields",
    "healthcheck": "healthcheck",
    "label": "pairs",
    "maintainer": "text",
    "onbuild": "instruction",
    "run": "json_or_text",
    "shell": "json_or_text",
    "stopsignal": "text",
    "user": "text",
    "volume": "json_or_words",
    "workdir": "text",
}


@dataclass
class Heredoc:
    name: str  # the delimiter word
    content: str = ""
    expand: bool = True  # False when the delimiter was quoted
    chomp: bool = False  # <<- strips leading tabs
    fd: int = 0


@dataclass
class Node:
    """One instruction as written."""

    keyword: str  # as written; `command` is its lower-case form
    original: str  # the instruction's text, continuation lines joined
    args: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    json: bool = False  # arguments given as a JSON array (exec form)
    heredocs: list[Heredoc] = field(default_factory=list)
    child: Node | None = None  # ONBUILD's trigger instruction
    start_line: int = 0
    end_line: int = 0

    @property
    def command(self) -> str:
        return self.keyword.lower()


@dataclass
class Dockerfile:
    nodes: list[Node]
    escape: str = DEFAULT_ESCAPE
    directives: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def error(line: int, message: str) -> InvalidArgument:
    return InvalidArgument(f"dockerfile parse error on line {line}: {message}")


class _Directives:
    """Parser directives: only at the very top, each once; the first other line ends them."""

    def __init__(self) -> None:
        self.escape = DEFAULT_ESCAPE
        self.values: dict[str, str] = {}
        self.done = False
        self._continuation = _continuation_regex(DEFAULT_ESCAPE)

    def feed(self, line: str, number: int) -> bool:
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        match = _DIRECTIVE.match(line[1:].lstrip())
        key = match.group(1).lower() if match else ""
        if not match or key not in _DIRECTIVES:
            self.done = True
            return False
        if key in self.values:
            raise error(number, f"only one {key} parser directive can be used")
        value = match.group(2)
        self.values[key] = value
        if key == "escape":
            if value not in ("\\", "`"):
                raise error(number, f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self._continuation = _continuation_regex(value)
        return True

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """The line without a trailing continuation mark, and whether the instruction ends."""
        if self._continuation.search(line):
            return self._continuation.sub(r"\1", line), False
        return line, True


def _continuation_regex(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(r"([^" + e + r"])" + e + r"[ \t]*$|^" + e + r"[ \t]*$")


def _split_lines(text: str) -> list[str]:
    """Lines with their `\\n` kept (only `\\n` ends a line, as in Docker)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
        return [line + "\n" for line in lines]
    return [line + "\n" for line in lines[:-1]] + lines[-1:]


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse(text: str) -> Dockerfile:
    """Parse a Dockerfile; raises InvalidArgument naming the line on a syntax error."""
    directives = _Directives()
    lines = _split_lines(text.removeprefix("\ufeff"))
    nodes: list[Node] = []
    warnings: list[str] = []
    index = 0
    number = 0  # line number of the last line consumed (1-based)

    def take(strip_left: bool) -> tuple[str, str]:
        nonlocal index, number
        raw = lines[index]
        index += 1
        number += 1
        line = raw.rstrip("\r\n")
        if strip_left:
            line = line.lstrip()
        directives.feed(line, number)
        return raw, ("" if _is_comment(line) else line)

    while index < len(lines):
        _raw, line = take(strip_left=True)
        start = number
        line, complete = directives.trim_continuation(line)
        if complete and not line:
            continue
        parts = [line]
        empty_continuation = False
        while not complete and index < len(lines):
            raw, line = take(strip_left=False)
            if _is_comment(raw):
                continue
            if not line.strip():
                empty_continuation = True
                continue
            line, complete = directives.trim_continuation(line)
            parts.append(line)
        logical = "".join(parts)
        if empty_continuation:
            warnings.append(f"Empty continuation line found in: {logical}")
        try:
            node = _node(logical, directives.escape)
        except InvalidArgument as e:
            raise error(start, e.message) from None
        node.start_line = start
        target = node.child if node.command == "onbuild" and node.child else node
        if target.command in _HEREDOC_INSTRUCTIONS and not target.json and "<<" in logical:
            for heredoc in _heredocs(logical, start):
                body: list[str] = []
                while True:
                    if index >= len(lines):
                        raise error(start, "unterminated heredoc")
                    raw = lines[index]
                    index += 1
                    number += 1
                    candidate = raw.rstrip("\r\n")
                    if heredoc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == heredoc.name:
                        break
                    body.append(raw)
                heredoc.content = "".join(body)
                node.heredocs.append(heredoc)
        node.end_line = number
        nodes.append(node)
    if not nodes:
        raise error(number, "file with no instructions")
    return Dockerfile(nodes, directives.escape, directives.values, warnings)


def _node(line: str, escape: str) -> Node:
    """An instruction node from one logical line."""
    split = _WHITESPACE.split(line.strip(), maxsplit=1)
    keyword = split[0]
    rest = ""
    flags: list[str] = []
    if len(split) == 2:
        rest, flags = _extract_flags(split[1], escape)
    rest = rest.strip()
    node = Node(keyword=keyword, original=line, flags=flags)
    form = _FORMS.get(keyword.lower())
    if form is not None:
        _arguments(node, form, rest, escape)
    return node


def _arguments(node: Node, form: str, rest: str, escape: str) -> None:
    if form == "instruction":
        if rest:
            node.child = _node(rest, escape)
        return
    if form == "text":
        node.args = [rest] if rest else []
    elif form == "fields":
        node.args = _WHITESPACE.split(rest) if rest else []
    elif form == "words":
        node.args = _words(rest, escape)
    elif form == "pairs":
        node.args = _pairs(rest, node.keyword.upper(), escape)
    elif form == "json_or_text":
        if rest:
            parsed = _json_array(rest)
            node.json = parsed is not None
            node.args = parsed if parsed is not None else [rest]
    elif form == "json_or_words":
        parsed = _json_array(rest)
        node.json = parsed is not None
        node.args = parsed if parsed is not None else (_WHITESPACE.split(rest) if rest else [])
    elif form == "healthcheck":
        if not rest:
            return
        kind, *more = rest.split(maxsplit=1)
        command = more[0] if more else ""
        parsed = _json_array(command) if command else None
        node.json = parsed is not None
        node.args = [kind, *(parsed if parsed is not None else ([command] if command else []))]


def _json_array(text: str) -> list[str] | None:
    """The strings of a JSON array, or None when `text` is not one (then it is shell form)."""
    text = text.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise InvalidArgument(
            "when using JSON array syntax, arrays must be comprised of strings only"
        )
    return value


def _extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading `--name=value` words, and the rest of the line."""
    flags: list[str] = []
    pos = 0
    while True:
        while pos < len(line) and line[pos].isspace():
            pos += 1
        if not line.startswith("--", pos):
            return line[pos:], flags
        word: list[str] = []
        quote = ""
        blank_ok = False
        while pos < len(line):
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == escape and pos + 1 < len(line):
                    pos += 1
                    word.append(line[pos])
                elif ch != escape:
                    word.append(ch)
            elif ch.isspace():
                break
            elif ch in "'\"":
                quote = ch
                blank_ok = True
            elif ch == escape:
                if pos + 1 < len(line):
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
            pos += 1
        text = "".join(word)
        if text == "--":
            return line[pos:], flags
        if text or blank_ok:
            flags.append(text)
        if pos >= len(line):
            return "", flags


def _words(rest: str, escape: str) -> list[str]:
    """Whitespace-separated words; quotes group and are kept (removed at expansion)."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    blank_ok = False
    quote = ""
    pos = 0
    while pos < len(rest):
        ch = rest[pos]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if pos + 1 == len(rest):
                    quote = ""
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
        elif ch.isspace():
            if in_word and (blank_ok or word):
                words.append("".join(word))
            word, in_word, blank_ok = [], False, False
        else:
            in_word = True
            if ch in "'\"":
                quote = ch
                blank_ok = True
            elif ch == escape:
                if pos + 1 == len(rest):
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
        pos += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def _pairs(rest: str, keyword: str, escape: str) -> list[str]:
    """ENV/LABEL arguments as [key, value, separator, ...] triples.

    `KEY value with spaces` (the legacy form, when the first word has no `=`)
    gives one pair with separator ""; `k=v k2="v 2"` gives one per word.
    """
    words = _words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise InvalidArgument(f"{keyword} must have two arguments")
        return [parts[0], parts[1], ""]
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise InvalidArgument(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        key, _, value = word.partition("=")
        out += [key, value, "="]
    return out


def _heredocs(line: str, number: int) -> list[Heredoc]:
    lexer = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lexer.words(line, {})
    except InvalidArgument:
        return []
    docs = []
    for word in words:
        heredoc = parse_heredoc(word)
        if heredoc is not None:
            docs.append(heredoc)
    return docs


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc that a word such as `<<EOF`, `<<-"EOF"` or `3<<EOF` opens, if any."""
    match = _HEREDOC.match(word)
    if not match or not match.group(3):
        return None
    rest = match.group(3)
    plain = Lexer(skip_unset=True)
    try:
        words = plain.words(rest, {})
        raw = Lexer(skip_unset=True, raw_quotes=True).words(rest, {})
    except InvalidArgument:
        return None
    if len(words) != 1 or len(raw) != 1:
        return None
    name = words[0]
    # Quotes around (part of) the delimiter turn expansion of the body off.
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    return Heredoc(
        name=name,
        expand=quotes == raw_quotes,
        chomp=match.group(2) == "-",
        fd=int(match.group(1) or 0),
    )


def chomp(content: str) -> str:
    """A `<<-` heredoc body: leading tabs removed from every line."""
    return _LEADING_TABS.sub("", content)
