"""Go ``text/template`` subset for docker-style ``--format`` flags.

`render` executes a template against API data (``inspect``); `format_rows` adds
docker's handling of list formats on top (``ps``, ``images``): the ``table``
prefix, ``json``, and ``\\t``/``\\n`` typed as two characters.

Syntax: text and ``{{ }}`` actions with ``{{-``/``-}}`` trim markers and
``{{/* comments */}}``; operands ``.``, ``.Field.Sub``, ``$``, ``$var.Field``,
``(pipeline).Field``, "strings" with Go escapes, `raw strings`, numbers, ``true``,
``false``, ``nil``; pipelines ``{{.Names | upper}}``; ``{{$x := pipeline}}``;
``if``/``else if``/``else``, ``range`` (optionally ``$i, $e :=``), ``with``, ``end``.
Functions: docker's ``json split join title lower upper pad truncate`` and Go's
``index len not and or eq ne lt le gt ge print printf println`` (printf: %s %d %v
%q and %%, flags ``-`` and ``0``, width, precision). Anything else raises
`TemplateError`.

Values print as Go's ``%v`` does: a missing map key is ``<no value>``, JSON null
``<nil>``, booleans true/false, lists ``[a b]``, dicts ``map[k:v]`` with sorted
keys, floats in Go's shortest form (``1e+06``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from typing import Any


class TemplateError(ValueError):
    """The format string is invalid, or cannot be applied to the data."""


class _NoValue:
    """A missing map key; Go prints it as ``<no value>`` and treats it as false."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<no value>"


_NO_VALUE: Any = _NoValue()


def render(template: str, data: Any) -> str:
    """Execute `template` with `data` (a dict or list decoded from JSON) as dot."""
    return _execute(_Parser(template).parse(), data)


def format_rows(fmt: str, rows: list[dict[str, Any]], headers: dict[str, str]) -> str:
    """Render `rows` as docker's list commands do, one newline-terminated line each.

    ``json`` prints each row as compact JSON. A ``table`` prefix adds a header line,
    rendered with `headers` (field name -> column title, e.g. "ID" -> "CONTAINER ID";
    a field without one is titled with its upper-cased name), and aligns the
    tab-separated columns as docker's tabwriter does. A bare ``table`` renders
    nothing: callers substitute their default table format first, as docker does.
    """
    if fmt == "json":
        fmt = "{{json .}}"
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table") :]
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    nodes = _Parser(fmt).parse()
    lines = "".join(_execute(nodes, row) + "\n" for row in rows)
    if not table:
        return lines
    return _align(_execute(nodes, headers, headers) + "\n" + lines)


# --- lexer -----------------------------------------------------------------------------

# Compiled on first use (re caches it): importing this module must stay cheap.
_TOKEN = r"""
      (?P<close_trim>[ \t\r\n]+-}})
    | (?P<close>}})
    | (?P<space>[ \t\r\n]+)
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<field>(?:\.[^\W\d]\w*)+|\.)
    | (?P<var>\$\w*)
    | (?P<ident>[^\W\d]\w*)
    | (?P<op>:=|[|(),=])
"""
_SPACE = " \t\r\n"
_SPACES = frozenset(_SPACE)


class _Tok:
    __slots__ = ("end", "kind", "start", "text")

    def __init__(self, kind: str, text: str, start: int, end: int) -> None:
        self.kind = kind  # a group name of _TOKEN
        self.text = text
        self.start = start
        self.end = end


class _ActionToks:
    __slots__ = ("pos", "toks")

    def __init__(self, toks: list[_Tok], pos: int) -> None:
        self.toks = toks
        self.pos = pos  # offset of the opening "{{"


def _error(msg: str, src: str, pos: int) -> TemplateError:
    line = src.count("\n", 0, pos) + 1
    col = pos - src.rfind("\n", 0, pos)
    return TemplateError(f"{msg} (line {line}, column {col})")


def _lex(src: str) -> list[str | _ActionToks]:
    """Split `src` into text and the tokens of each action, applying trim markers."""
    token = re.compile(_TOKEN, re.VERBOSE)
    items: list[str | _ActionToks] = []
    pos, trim_next = 0, False
    while True:
        start = src.find("{{", pos)
        text = src[pos:] if start < 0 else src[pos:start]
        if trim_next:
            text = text.lstrip(_SPACE)
        if start < 0:
            if text:
                items.append(text)
            return items
        pos = start + 2
        if src[pos : pos + 1] == "-" and src[pos + 1 : pos + 2] in _SPACES:
            text = text.rstrip(_SPACE)
            pos += 2
        if text:
            items.append(text)
        if src.startswith("/*", pos):
            pos, trim_next = _skip_comment(src, pos, start)
            continue
        toks: list[_Tok] = []
        while True:
            m = token.match(src, pos)
            if m is None:
                if pos >= len(src):
                    raise _error("unclosed action", src, start)
                if src[pos] in '"`':
                    raise _error("unterminated string", src, pos)
                raise _error(f"unexpected {src[pos]!r} in action", src, pos)
            kind, pos = m.lastgroup or "", m.end()
            if kind in ("close", "close_trim"):
                trim_next = kind == "close_trim"
                break
            if kind != "space":
                toks.append(_Tok(kind, m.group(), m.start(), pos))
        items.append(_ActionToks(toks, start))


def _skip_comment(src: str, pos: int, start: int) -> tuple[int, bool]:
    """Skip a {{/* comment */}} whose text starts at `pos`; return (end, trim next text)."""
    end = src.find("*/", pos + 2)
    if end < 0:
        raise _error("unclosed comment", src, start)
    end += 2
    if src.startswith("}}", end):
        return end + 2, False
    if src[end : end + 1] in _SPACES and src.startswith("-}}", end + 1):
        return end + 4, True
    raise _error("comment ends before closing delimiter", src, start)


# --- parser ------------------------------------------------------------------------------


class _Const:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Func:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Chain:
    """Fields looked up from a base: ``.A.B`` (dot), ``$x.A`` or ``(pipeline).A``."""

    __slots__ = ("base", "names")

    def __init__(self, base: str | _Pipe | None, names: tuple[str, ...]) -> None:
        self.base = base  # None for dot, a variable name, or a pipeline
        self.names = names


_Arg = _Const | _Func | _Chain


class _Pipe:
    __slots__ = ("cmds", "decl")

    def __init__(self, decl: tuple[str, ...], cmds: tuple[tuple[_Arg, ...], ...]) -> None:
        self.decl = decl  # variables declared with :=
        self.cmds = cmds  # each: a function and its arguments, or a single operand


class _Text:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Output:
    __slots__ = ("pipe",)

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe


class _Block:
    __slots__ = ("alt", "body", "kind", "pipe")

    def __init__(self, kind: str, pipe: _Pipe, body: _Nodes, alt: _Nodes) -> None:
        self.kind = kind  # "if", "range" or "with"
        self.pipe = pipe
        self.body = body
        self.alt = alt  # the {{else}} part


_Node = _Text | _Output | _Block
_Nodes = tuple[_Node, ...]

_CONSTANTS = {"true": True, "false": False, "nil": None}
_UNSUPPORTED = {"define", "template", "block", "break", "continue"}
_KEYWORDS = {"if", "else", "end", "range", "with", *_UNSUPPORTED}


def _field_names(field: str) -> tuple[str, ...]:
    return tuple(field.split(".")[1:]) if field != "." else ()


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.items = _lex(src)
        self.i = 0  # next item
        self.vars = ["$"]  # variables in scope
        self.toks: list[_Tok] = []  # tokens of the current action
        self.t = 0  # next token
        self.pos = 0  # offset of the current action

    def parse(self) -> _Nodes:
        nodes, _ = self._list(None)
        return nodes

    def _error(self, msg: str) -> TemplateError:
        return _error(msg, self.src, self.pos)

    def _list(self, block: str | None) -> tuple[_Nodes, str]:
        """Parse up to the {{else}} or {{end}} of `block`; return the nodes and that word."""
        opened_at = self.pos
        nodes: list[_Node] = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if isinstance(item, str):
                nodes.append(_Text(item))
                continue
            self.toks, self.t, self.pos = item.toks, 0, item.pos
            first = self.toks[0] if self.toks else None
            word = first.text if first and first.kind == "ident" else ""
            if word in ("else", "end"):
                if block is None:
                    raise self._error(f"unexpected {{{{{word}}}}}")
                self.t = 1
                return tuple(nodes), word
            if word in _UNSUPPORTED:
                raise self._error(f"{{{{{word}}}}} is not supported")
            if word in ("if", "range", "with"):
                self.t = 1
                nodes.append(self._block(word))
            else:
                nodes.append(_Output(self._pipeline("command")))
        if block is not None:
            raise _error(f"missing {{{{end}}}} for this {{{{{block}}}}}", self.src, opened_at)
        return tuple(nodes), ""

    def _block(self, kind: str) -> _Block:
        mark = len(self.vars)
        pipe = self._pipeline(kind)
        body, word = self._list(kind)
        alt: _Nodes = ()
        if word == "else":
            nxt = self.toks[1] if len(self.toks) > 1 else None
            if nxt and nxt.kind == "ident" and nxt.text == kind != "range":
                self.t = 2  # {{else if ...}}: a nested block that shares our {{end}}
                alt = (self._block(kind),)
            else:
                self._end_of_action()
                alt, word = self._list(kind)
                if word == "else":
                    raise self._error(f"more than one {{{{else}}}} in {kind}")
        self._end_of_action()
        del self.vars[mark:]
        return _Block(kind, pipe, body, alt)

    def _end_of_action(self) -> None:
        if self.t < len(self.toks):
            raise self._error(f"unexpected {self.toks[self.t].text!r}")

    def _pipeline(self, context: str) -> _Pipe:
        """Parse the rest of the action: an optional declaration, then commands."""
        toks = self.toks[self.t :]
        shape = [tok.text if tok.kind == "op" else tok.kind for tok in toks[:4]]
        decl: tuple[str, ...] = ()
        if shape[:2] == ["var", ":="]:
            decl = (toks[0].text,)
        elif context == "range" and shape == ["var", ",", "var", ":="]:
            decl = (toks[0].text, toks[2].text)
        elif shape[:2] == ["var", "="]:
            raise self._error("assigning variables with = is not supported")
        self.t += 2 * len(decl)
        cmds = self._commands(closing=False)
        if not cmds:
            raise self._error(f"missing value for {context}")
        self.vars.extend(decl)  # only now: in `$x := $x` the right side is the outer $x
        return _Pipe(decl, cmds)

    def _commands(self, closing: bool) -> tuple[tuple[_Arg, ...], ...]:
        """Parse commands separated by "|", up to the end of the action or a ")"."""
        cmds: list[tuple[_Arg, ...]] = []
        args: list[_Arg] = []
        while True:
            tok = self.toks[self.t] if self.t < len(self.toks) else None
            self.t += 1
            if tok is None or (tok.kind == "op" and tok.text == ")"):
                if closing != (tok is not None):
                    raise self._error("unclosed left paren" if closing else "unexpected )")
                break
            if tok.kind == "op" and tok.text == "|":
                if not args:
                    raise self._error("missing command before |")
                cmds.append(tuple(args))
                args = []
            else:
                args.append(self._operand(tok))
        if args:
            cmds.append(tuple(args))
        elif cmds:
            raise self._error("missing command after |")
        elif closing:
            raise self._error("missing value in ()")
        for stage, cmd in enumerate(cmds, 1):
            if isinstance(cmd[0], _Const) and cmd[0].value is None:
                raise self._error("nil is not a command")
            if not isinstance(cmd[0], _Func):
                if len(cmd) > 1:
                    raise self._error("can't give arguments to a non-function")
                if stage > 1:
                    raise self._error(f"pipeline stage {stage} is not a function call")
        return tuple(cmds)

    def _operand(self, tok: _Tok) -> _Arg:
        kind, text = tok.kind, tok.text
        if kind == "string":
            try:
                return _Const(_unquote(text))
            except TemplateError as e:
                raise self._error(str(e)) from None
        if kind == "raw":
            return _Const(text[1:-1])
        if kind == "number":
            return _Const(float(text) if any(c in text for c in ".eE") else int(text))
        if kind == "field":
            return _Chain(None, _field_names(text))
        if kind == "var":
            if text not in self.vars:
                raise self._error(f"undefined variable {text}")
            return _Chain(text, self._chained(tok))
        if kind == "ident":
            if text in _CONSTANTS:
                return _Const(_CONSTANTS[text])
            if text in _FUNCS or text in ("and", "or"):
                return _Func(text)
            if text in _KEYWORDS:
                raise self._error(f"unexpected {text!r} in command")
            raise self._error(f'function "{text}" not defined')
        if text == "(":
            pipe = _Pipe((), self._commands(closing=True))
            return _Chain(pipe, self._chained(self.toks[self.t - 1]))
        raise self._error(f"unexpected {text!r} in command")

    def _chained(self, prev: _Tok) -> tuple[str, ...]:
        """Field names written right after `prev`, as in $x.Name or (index . 0).Name."""
        if self.t < len(self.toks):
            tok = self.toks[self.t]
            if tok.kind == "field" and tok.start == prev.end and tok.text != ".":
                self.t += 1
                return _field_names(tok.text)
        return ()


_ESCAPE = r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)"
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}


def _unquote(literal: str) -> str:
    """Decode a Go interpreted string literal ("..." with backslash escapes)."""

    def decode(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[esc]
        code = int(esc[1:], 16) if esc[0] in "xuU" else int(esc, 8) if len(esc) == 3 else -1
        if not 0 <= code <= 0x10FFFF:
            raise TemplateError(f"invalid escape \\{esc} in string {literal}")
        return chr(code)

    return re.sub(_ESCAPE, decode, literal[1:-1])


# --- execution ---------------------------------------------------------------------------


def _execute(nodes: _Nodes, data: Any, headers: dict[str, str] | None = None) -> str:
    run = _Run(data, headers)
    run.walk(nodes, data)
    return "".join(run.out)


class _Run:
    """One execution. With `headers` it renders a table's header line instead: every
    field chain yields its column title, and docker's string functions (plus index
    and len) return their first argument unchanged."""

    def __init__(self, root: Any, headers: dict[str, str] | None) -> None:
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.headers = headers
        self.out: list[str] = []

    def walk(self, nodes: _Nodes, dot: Any) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Output):
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(_go_string(value))
            else:
                mark = len(self.vars)
                value = self.pipe(node.pipe, dot)
                if node.kind == "range":
                    self.walk_range(node, value, dot)
                elif value:  # Go's truth: not false, 0, "", empty list or map, nil, missing
                    self.walk(node.body, value if node.kind == "with" else dot)
                else:
                    self.walk(node.alt, dot)
                del self.vars[mark:]

    def walk_range(self, node: _Block, value: Any, dot: Any) -> None:
        items: list[tuple[Any, Any]]
        if isinstance(value, str) and self.headers is not None:
            items = [(value, value)]  # a header line shows the body's titles once
        elif isinstance(value, dict):
            items = [(key, value[key]) for key in sorted(value)]
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif value is None or value is _NO_VALUE:
            items = []
        else:
            raise TemplateError(f"range can't iterate over {_go_string(value)}")
        if not items:
            self.walk(node.alt, dot)
            return
        names, mark = node.pipe.decl, len(self.vars)
        for key, elem in items:
            if names:  # `$e :=` or `$i, $e :=`
                self.vars[-1] = (names[-1], elem)
            if len(names) == 2:
                self.vars[-2] = (names[0], key)
            self.walk(node.body, elem)
            del self.vars[mark:]

    def pipe(self, pipe: _Pipe, dot: Any) -> Any:
        value: Any = None
        piped: tuple[Any, ...] = ()  # the previous command's value: the next one's last arg
        for cmd in pipe.cmds:
            head = cmd[0]
            if isinstance(head, _Func):
                value = self.call(head.name, cmd[1:], dot, piped)
            else:
                value = self.arg(head, dot)
            piped = (value,)
        self.vars.extend((name, value) for name in pipe.decl)
        return value

    def arg(self, node: _Arg, dot: Any) -> Any:
        if isinstance(node, _Const):
            return node.value
        if isinstance(node, _Func):
            return self.call(node.name, (), dot, ())
        if node.base is None:
            value = dot
        elif isinstance(node.base, str):
            value = next(v for name, v in reversed(self.vars) if name == node.base)
        else:
            value = self.pipe(node.base, dot)
        if node.names and self.headers is not None:
            return self.headers.get(".".join(node.names), node.names[-1].upper())
        for i, name in enumerate(node.names):
            if isinstance(value, dict):
                value = value.get(name, _NO_VALUE)
            elif value is None:
                raise TemplateError(f"nil pointer evaluating .{'.'.join(node.names[: i + 1])}")
            elif value is not _NO_VALUE:  # as in Go, below a missing key all is missing
                raise TemplateError(f"can't evaluate field {name} in type {_go_type(value)}")
        return value

    def call(self, name: str, nodes: tuple[_Arg, ...], dot: Any, piped: tuple[Any, ...]) -> Any:
        if name in ("and", "or"):
            return self.and_or(name, nodes, dot, piped)
        args = [self.arg(node, dot) for node in nodes] + list(piped)
        if self.headers is not None and name in _HEADER_FUNCS:
            return args[0] if args else ""
        low, high, fn = _FUNCS[name]
        if len(args) < low or (high is not None and len(args) > high):
            want = str(low) if low == high else f"at least {low}"
            raise TemplateError(f"wrong number of args for {name}: want {want} got {len(args)}")
        return fn(*args)

    def and_or(self, name: str, nodes: tuple[_Arg, ...], dot: Any, piped: tuple[Any, ...]) -> Any:
        """Go's and/or: the first false/true argument or else the last, evaluated lazily."""
        if not nodes and not piped:
            raise TemplateError(f"wrong number of args for {name}: want at least 1 got 0")

        def values() -> Iterator[Any]:
            for node in nodes:
                yield self.arg(node, dot)
            yield from piped

        value: Any = None
        for value in values():
            if bool(value) == (name == "or"):
                return value
        return value


# --- functions ---------------------------------------------------------------------------


def _want_str(fn: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TemplateError(f"{fn}: expected a string, got {_go_type(value)}")
    return value


def _want_int(fn: str, value: Any) -> int:
    if not _is_int(value):
        raise TemplateError(f"{fn}: expected an integer, got {_go_type(value)}")
    return int(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _interface(value: Any) -> Any:
    """A missing value passed where Go expects any value arrives as nil."""
    return None if value is _NO_VALUE else value


def _map_case(fn: str, s: Any, convert: Callable[[str], str]) -> str:
    """Convert each character as Go does: one rune to one rune (so "ß" stays "ß")."""
    return "".join(c if len(c := convert(ch)) == 1 else ch for ch in _want_str(fn, s))


def _title(s: Any) -> str:
    """Go's strings.Title: title-case the first letter of each word, keep the rest."""
    out, boundary = [], True
    for ch in _want_str("title", s):
        out.append(_map_case("title", ch, str.title) if boundary else ch)
        boundary = ch.isspace() if not ch.isascii() else not (ch.isalnum() or ch == "_")
    return "".join(out)


def _join(items: Any, sep: Any) -> str:
    if items is None:  # a nil list, which the API sends as null
        return ""
    if not isinstance(items, list | tuple):
        raise TemplateError(f"join: expected a list, got {_go_type(items)}")
    return _want_str("join", sep).join(map(_go_string, items))


def _split(s: Any, sep: Any) -> list[str]:
    s, sep = _want_str("split", s), _want_str("split", sep)
    return s.split(sep) if sep else list(s)


def _truncate(s: Any, length: Any) -> str:
    s, length = _want_str("truncate", s), _want_int("truncate", length)
    if length < 0:
        raise TemplateError("truncate: negative length")
    return s[:length]


def _pad(s: Any, prefix: Any, suffix: Any) -> str:
    s = _want_str("pad", s)
    return " " * _want_int("pad", prefix) + s + " " * _want_int("pad", suffix) if s else s


def _index(item: Any, *keys: Any) -> Any:
    """Go's index: item[k1][k2]...; a missing map key gives <no value>."""
    for key in keys:
        if isinstance(item, dict):
            if not isinstance(key, str):
                raise TemplateError(f"index: map key must be a string, got {_go_type(key)}")
            item = item.get(key, _NO_VALUE)
        elif isinstance(item, list | tuple | str):
            if not _is_int(key):
                raise TemplateError(f"index: cannot index a list with {_go_type(key)}")
            seq = item.encode() if isinstance(item, str) else item  # Go strings index bytes
            if not 0 <= key < len(seq):
                raise TemplateError(f"index: index out of range: {key}")
            item = seq[key]
        else:
            raise TemplateError(f"index: can't index item of type {_go_type(item)}")
    return item


def _len(value: Any) -> int:
    if value is None:  # a nil list or map (JSON null)
        return 0
    if isinstance(value, str):
        return len(value.encode())  # Go counts bytes
    if isinstance(value, list | tuple | dict):
        return len(value)
    raise TemplateError(f"len of type {_go_type(value)}")


def _print(*args: Any) -> str:
    """fmt.Sprint: operands separated by a space when neither is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_go_string(_interface(arg)))
    return "".join(out)


def _println(*args: Any) -> str:
    return " ".join(_go_string(_interface(arg)) for arg in args) + "\n"


_DIRECTIVE = r"%([-+# 0]*)(\d*)(?:\.(\d*))?(.?)"


def _printf(fmt: Any, *args: Any) -> str:
    """fmt.Sprintf restricted to %s %d %v %q and %%, flags - and 0, width, precision."""
    fmt = _want_str("printf", fmt)
    out: list[str] = []
    pos = used = 0
    for m in re.finditer(_DIRECTIVE, fmt, re.DOTALL):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, precision, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if not verb:
            out.append("%!(NOVERB)")
            continue
        if verb not in "sdvq" or set(flags) - {"-", "0"}:
            raise TemplateError(
                f"printf: unsupported directive {m.group()!r} "
                "(supported: %s %d %v %q, flags - and 0, width, precision)"
            )
        if used == len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = _interface(args[used])
        used += 1
        prec = None if precision is None else int(precision or 0)
        text = _format_verb(verb, arg, prec)
        if text is None:
            out.append(f"%!{verb}({_bad_arg(arg)})")
            continue
        fill = int(width or 0) - len(text)
        if fill <= 0:
            out.append(text)
        elif "-" in flags:
            out.append(text + " " * fill)
        elif "0" in flags and prec is None and _is_int(arg):
            sign = "-" if text.startswith("-") else ""
            out.append(sign + "0" * fill + text[len(sign) :])
        else:
            out.append(" " * fill + text)
    out.append(fmt[pos:])
    if used < len(args):
        out.append(f"%!(EXTRA {', '.join(_bad_arg(_interface(a)) for a in args[used:])})")
    return "".join(out)


def _format_verb(verb: str, arg: Any, prec: int | None) -> str | None:
    """One printf directive before padding; None if `arg` has the wrong type for it."""
    if verb == "d" or (verb == "v" and _is_int(arg)):
        if not _is_int(arg):
            return None
        digits = "" if prec == 0 and arg == 0 else str(abs(arg)).zfill(prec or 0)
        return "-" + digits if arg < 0 else digits
    if verb == "q":
        if isinstance(arg, str):
            return _go_quote(arg[:prec])
        return _go_quote(chr(arg), "'") if _is_int(arg) and 0 <= arg <= 0x10FFFF else None
    if isinstance(arg, str):
        return arg[:prec]
    if verb == "s" and not isinstance(arg, list | tuple | dict):
        return None
    if prec is not None:
        raise TemplateError(f"printf: a precision with %{verb} needs a string or an integer")
    return _go_string(arg)


def _bad_arg(arg: Any) -> str:
    return "<nil>" if arg is None else f"{_go_type(arg)}={_go_string(arg)}"


def _kind(value: Any) -> str:
    """What Go's comparison functions consider the kind of `value`."""
    if value is None or value is _NO_VALUE:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TemplateError(f"cannot compare values of type {_go_type(value)}")


def _eq(first: Any, *others: Any) -> bool:
    """Go's eq: whether `first` equals any of `others`."""
    if not others:
        raise TemplateError("eq: missing argument for comparison")
    kind = _kind(first)
    for other in others:
        other_kind = _kind(other)
        if kind == other_kind and (kind == "nil" or first == other):
            return True
        if kind != other_kind and "nil" not in (kind, other_kind):
            raise TemplateError(f"incompatible types for comparison: {kind} and {other_kind}")
    return False


def _ordering(name: str, op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if {_kind(a), _kind(b)} not in ({"number"}, {"string"}):
            raise TemplateError(f"{name}: can only compare two numbers or two strings")
        return op(a, b)

    return compare


# name -> (fewest args, most args or None, implementation); "and"/"or" are in _Run.
_FUNCS: dict[str, tuple[int, int | None, Callable[..., Any]]] = {
    "json": (1, 1, lambda v: _to_json(_interface(v))),
    "upper": (1, 1, lambda s: _map_case("upper", s, str.upper)),
    "lower": (1, 1, lambda s: _map_case("lower", s, str.lower)),
    "title": (1, 1, _title),
    "join": (2, 2, _join),
    "split": (2, 2, _split),
    "truncate": (2, 2, _truncate),
    "pad": (3, 3, _pad),
    "index": (1, None, _index),
    "len": (1, 1, _len),
    "print": (0, None, _print),
    "println": (0, None, _println),
    "printf": (1, None, _printf),
    "not": (1, 1, operator.not_),
    "eq": (1, None, _eq),
    "ne": (2, 2, lambda a, b: not _eq(a, b)),
    "lt": (2, 2, _ordering("lt", operator.lt)),
    "le": (2, 2, _ordering("le", operator.le)),
    "gt": (2, 2, _ordering("gt", operator.gt)),
    "ge": (2, 2, _ordering("ge", operator.ge)),
}
# In a header line these return their first argument: docker's header functions, plus
# index and len, which would fail on a title.
_HEADER_FUNCS = {"json", "split", "join", "title", "lower", "upper", "truncate", "index", "len"}


# --- values as Go prints them ---------------------------------------------------------------


def _go_type(value: Any) -> str:
    if value is None:
        return "nil"
    if value is _NO_VALUE:
        return "<no value>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return type(value).__name__


def _go_string(value: Any) -> str:
    """`value` as Go's fmt prints it with %v."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return _go_float(value, json=False)
    if isinstance(value, list | tuple):
        return "[" + " ".join(map(_go_string, value)) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_string(value[k])}" for k in sorted(value)) + "]"
    return str(value)  # int, <no value>


def _go_float(f: float, json: bool) -> str:
    """Shortest round-trip form, as Go's %v (exponent below 1e-4 and from 1e+06) or
    encoding/json (exponent below 1e-6 and from 1e+21) print a float64."""
    if f != f or f in (float("inf"), float("-inf")):
        if json:
            raise TemplateError(f"json: unsupported value: {f}")
        return "NaN" if f != f else "+Inf" if f > 0 else "-Inf"
    sign = "-" if repr(f).startswith("-") else ""
    if f == 0:
        return sign + "0"
    # repr gives the shortest digits; rewrite it as 0.DIGITS x 10**point
    mantissa, _, exponent = repr(abs(f)).partition("e")
    whole, _, frac = mantissa.partition(".")
    significant = (whole + frac).lstrip("0")
    point = len(significant) + int(exponent or 0) - len(frac)
    digits = significant.rstrip("0")
    low, high = (-6, 21) if json else (-4, 6)
    if low <= point - 1 < high:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    exp = point - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    # %v pads the exponent to two digits; encoding/json writes e-7, not e-07
    exp_digits = str(abs(exp)) if json and exp < 0 else f"{abs(exp):02d}"
    return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{exp_digits}"


def _go_quote(s: str, quote: str = '"') -> str:
    """Go's strconv.Quote, or QuoteRune with quote="'"."""
    out = [quote]
    for ch in s:
        if ch in (quote, "\\"):
            out.append("\\" + ch)
        elif ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append(quote)
    return "".join(out)


_QUOTE_ESCAPES = {v: "\\" + k for k, v in _SIMPLE_ESCAPES.items() if k not in '\\"'}

# encoding/json string escapes; docker turns HTML escaping off.
_JSON_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_JSON_ESCAPES.update({ord(c): "\\" + e for c, e in zip('"\\\n\r\t\b\f', '"\\nrtbf', strict=True)})
_JSON_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def _to_json(value: Any) -> str:
    """Compact JSON as Go's encoding/json writes it; dict keys keep their order."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value, json=True)
    if isinstance(value, str):
        return '"' + value.translate(_JSON_ESCAPES) + '"'
    if isinstance(value, dict):
        return "{" + ",".join(f"{_to_json(str(k))}:{_to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(_to_json, value)) + "]"
    raise TemplateError(f"json: unsupported type {type(value).__name__}")


# --- table alignment -----------------------------------------------------------------------

# docker: tabwriter.NewWriter(out, minwidth=10, tabwidth=1, padding=3, padchar=' ', flags=0)
_MIN_WIDTH = 10
_PADDING = 3


def _align(text: str) -> str:
    """Go's text/tabwriter: tab-terminated cells of consecutive lines form a column,
    padded to its widest cell plus _PADDING, and at least _MIN_WIDTH wide."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths: list[int] = []  # of the columns enclosing the current block of lines
    out: list[str] = []

    def emit(first: int, last: int) -> None:
        for cells in lines[first:last]:
            out.append(
                "".join(
                    cell + " " * (widths[j] - _width(cell)) if j < len(widths) else cell
                    for j, cell in enumerate(cells)
                )
            )

    def layout(first: int, last: int) -> None:
        column = len(widths)
        this = first
        while this < last:
            if column >= len(lines[this]) - 1:  # no cell in this column (the last one is not)
                this += 1
                continue
            emit(first, this)
            first, width = this, _MIN_WIDTH
            while this < last and column < len(lines[this]) - 1:
                width = max(width, _width(lines[this][column]) + _PADDING)
                this += 1
            widths.append(width)
            layout(first, this)
            widths.pop()
            first = this
        emit(first, last)

    layout(0, len(lines))
    return "\n".join(out)


def _width(s: str) -> int:
    """Width in terminal cells, as go-runewidth (used by docker's tabwriter) counts."""
    if s.isascii():
        return len(s)
    import unicodedata

    wide = ("W", "F")
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in wide else 1
        for ch in s
    )
