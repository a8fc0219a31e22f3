"""JSON read and written the way Docker's daemon does it: the plugin wire and the Engine API.

Plugins and Engine API clients were written against Go's `encoding/json`, so
messages here follow its rules rather than Python's habits:

* object keys match fields case-insensitively, an exact match first
  (`MountPoint` and `mountpoint` both fill `Mountpoint`); unknown keys are
  ignored; `null` leaves a field at its zero value;
* a JSON value of the wrong type for a known field is a decoding error, and
  so is a number outside the field's Go type: a plain `int` is Go's `int64`,
  `UInt16`, `UInt32` and `UInt64` are Go's unsigned types (an integral float
  such as `5.0` is still a number an integer field takes);
* on output every field is present unless it is marked `omitempty`, absent
  collections are written as `null` (Go's nil) unless a default says
  otherwise, and `bytes` travel as standard base64 strings. `omitempty`
  drops what Go drops: zero scalars, nil or empty collections, and for an
  optional scalar (Go's `*int`, `*bool`) only nil.

A message is a dataclass deriving from `Message`; each field names its wire
key with `wire("Key")`, or gets the CamelCase of its Python name. A type of
Docker's own with a looser JSON form (a string or a list of strings) is a
class with a `from_wire(value, path)` class method.

`loads()` parses the JSON text itself as Go's decoder accepts it: UTF-8 only,
no `NaN` or `Infinity`, one value, and nesting bounded (`MAX_DEPTH`), so a
hostile body is a `WireError` (a 400 at the API), never a recursion error.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import types
import typing
from typing import (
    Annotated,
    Any,
    Self,
    TypeVar,
    Union,
    dataclass_transform,
    get_args,
    get_origin,
)

MEDIA_TYPE = "application/vnd.docker.plugins.v1.2+json"

T = TypeVar("T")
_MISSING: Any = dataclasses.MISSING


class WireError(ValueError):
    """A JSON document that does not fit the message it should decode into."""


# -- Go's integer types ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GoInt:
    """The range of one of Go's integer types; `Annotated[int, GoInt(...)]` marks a field."""

    name: str
    low: int
    high: int


INT64 = GoInt("int64", -(1 << 63), (1 << 63) - 1)
Int64 = Annotated[int, INT64]  # also what a plain `int` field is
UInt16 = Annotated[int, GoInt("uint16", 0, (1 << 16) - 1)]
UInt32 = Annotated[int, GoInt("uint32", 0, (1 << 32) - 1)]
UInt64 = Annotated[int, GoInt("uint64", 0, (1 << 64) - 1)]


# -- parsing ---------------------------------------------------------------------

# Deeper than any message Docker or a plugin sends, and far below what Python's
# parser and encoder can recurse into (Go's own decoder stops at 10000).
MAX_DEPTH = 128
_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _go_constant(name: str) -> Any:
    raise WireError(f"invalid character {name[0]!r} looking for beginning of value")


def loads(raw: bytes | str) -> Any:
    """One JSON value from `raw` as Go's decoder reads it (see the module docstring)."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise WireError(f"invalid UTF-8 at byte {e.start}") from None
    else:
        text = raw
    _check_depth(text)
    try:
        return json.loads(text, parse_constant=_go_constant)
    except json.JSONDecodeError as e:
        raise WireError(str(e)) from None
    except RecursionError:  # unreachable after the depth check; kept as the last guard
        raise WireError(f"exceeded max depth of {MAX_DEPTH}") from None


def _check_depth(text: str) -> None:
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return  # cannot nest deeper than it has brackets
    depth = 0
    for token in _NESTING.finditer(text):
        match token.group():
            case "[" | "{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise WireError(f"exceeded max depth of {MAX_DEPTH}")
            case "]" | "}":
                depth -= 1


def wire(
    key: str | None = None,
    *,
    default: Any = _MISSING,
    default_factory: Any = _MISSING,
    omitempty: bool = False,
) -> Any:
    """A message field: its wire `key` (default: CamelCase of the attribute name)."""
    metadata = {"wire": key, "omitempty": omitempty}
    if default is _MISSING and default_factory is _MISSING:
        return dataclasses.field(metadata=metadata)
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


@dataclasses.dataclass(frozen=True)
class _Field:
    attr: str
    key: str
    type: Any
    omitempty: bool


_FIELDS: dict[type, tuple[_Field, ...]] = {}


def _fields(cls: type) -> tuple[_Field, ...]:
    known = _FIELDS.get(cls)
    if known is not None:
        return known
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = _FIELDS[cls] = tuple(
        _Field(
            f.name,
            f.metadata.get("wire") or camel(f.name),
            hints[f.name],
            bool(f.metadata.get("omitempty")),
        )
        for f in dataclasses.fields(cls)
    )
    return fields


def lookup(data: dict[str, Any], key: str) -> Any:
    """`data[key]` with Go's rule: exact key first, else any key equal ignoring case."""
    if key in data:
        return data[key]
    lowered = key.lower()
    for k, v in data.items():
        if k.lower() == lowered:
            return v
    return None


def _zero(tp: Any) -> Any:
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if tp is str:
        return ""
    if tp is int:
        return 0
    if tp is float:
        return 0.0
    if tp is bool:
        return False
    if tp is bytes:
        return b""
    return None


def decode_value(tp: Any, value: Any, path: str) -> Any:
    """Decode `value` into type `tp` (str, int, float, bool, bytes, Any, list, dict,
    Optional, Message)."""
    if tp is Any:
        return value
    bounds = INT64
    origin = get_origin(tp)
    if origin is Annotated:
        tp, *extras = get_args(tp)
        bounds = next((e for e in extras if isinstance(e, GoInt)), INT64)
        origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return decode_value(inner[0], value, path)
    if value is None:
        if isinstance(tp, type) and issubclass(tp, Message):
            return None
        return _zero(tp) if origin is None else None
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(path, "string", value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(path, "bool", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(path, "number", value)
        if isinstance(value, float):
            if not value.is_integer():
                raise WireError(
                    f"json: cannot unmarshal number {value!r} into {path or 'value'} "
                    f"of type {bounds.name}"
                )
            number = int(value)
        else:
            number = value
        if not bounds.low <= number <= bounds.high:
            raise WireError(
                f"json: cannot unmarshal number {value!r} into {path or 'value'} "
                f"of type {bounds.name}"
            )
        return number
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(path, "number", value)
        return float(value)
    if tp is bytes:
        if not isinstance(value, str):
            raise _type_error(path, "base64 string", value)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise WireError(f"{path}: invalid base64") from None
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(path, "array", value)
        (item,) = get_args(tp)
        return [decode_value(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(path, "object", value)
        _key, item = get_args(tp)
        return {k: decode_value(item, v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Message):
        return tp.decode(value, path)
    if isinstance(tp, type) and hasattr(tp, "from_wire"):
        return tp.from_wire(value, path)
    raise TypeError(f"unsupported wire type {tp!r}")


def _type_error(path: str, expected: str, value: Any) -> WireError:
    kind = {
        bool: "bool",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)
    return WireError(f"json: cannot unmarshal {kind} into {path or 'value'} of type {expected}")


def encode_value(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_wire()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        return {k: encode_value(v) for k, v in value.items()}
    return value


def _empty(value: Any, tp: Any) -> bool:
    """Whether Go's `omitempty` leaves the field out."""
    if value is None:
        return True
    if get_origin(tp) in (Union, types.UnionType) and not isinstance(value, list | dict):
        return False  # a pointer to a scalar or a struct: only nil is empty
    if isinstance(value, Message):
        return False
    return value is False or value == 0 or value in ("", b"", [], {})


@dataclass_transform(field_specifiers=(wire, dataclasses.field))
class Message:
    """Base of every plugin message (request or reply); subclasses become dataclasses."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls)

    @classmethod
    def decode(cls, data: Any, path: str = "") -> Self:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _type_error(path, cls.__name__, data)
        values: dict[str, Any] = {}
        for f in _fields(cls):
            raw = lookup(data, f.key)
            where = f"{path}.{f.key}" if path else f.key
            if raw is None:
                continue  # absent or null: keep the default (Go's zero value)
            values[f.attr] = decode_value(f.type, raw, where)
        try:
            return cls(**values)
        except TypeError as e:
            raise WireError(f"{path or cls.__name__}: {e}") from None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in _fields(type(self)):
            value = getattr(self, f.attr)
            if f.omitempty and _empty(value, f.type):
                continue
            out[f.key] = encode_value(value)
        return out


def decode(cls: type[T], data: Any) -> T:
    """Decode a parsed JSON document into message class `cls`."""
    assert issubclass(cls, Message)
    return cls.decode(data)
