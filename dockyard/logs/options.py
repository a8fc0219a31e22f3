"""Log-driver options: Docker's keys, defaults and error messages, and what they bound.

A container's `LogConfig` (`Type` and the `--log-opt` map) is merged with the
daemon's defaults (`log-driver`, `log-opts` in daemon.json) at create, as
moby merges it: a request without a type gets the daemon's driver; the
daemon's options fill the keys a request leaves out when the request names
the daemon's driver. The result is checked here with moby's rules and
wording, so a bad value is refused at create rather than at start, and is
what inspect shows.

`validate()` also turns the checked options into the bounds the monitor and
the log keeper apply (`Rotation`): json-file keeps everything unless
`max-size` is set; `local` keeps at most 5 files of 20 MiB, compressed,
unless told otherwise; `k8s-file` (the monitor's own format) reads its
options as json-file does; `none` keeps nothing.

For a plugin driver the engine keeps its own copy of the output, Docker's
"dual logging" cache: it is bounded like a `local` log by the `cache-`
options (`cache-max-size`, `cache-max-file`, `cache-compress`, with local's
defaults and rules) and `cache-disabled` says whether `logs` may read it.
Every other option of a plugin driver is the plugin's to judge. As in moby,
the cache options are accepted for every driver, and daemon.json's fill a
container's whatever its driver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.errors import InvalidArgument

JSON_FILE = "json-file"
LOCAL = "local"
K8S_FILE = "k8s-file"
NONE = "none"
BUILTIN = (JSON_FILE, K8S_FILE, LOCAL, NONE)

# Options moby takes for every driver (the logger's own buffering), and the attributes
# the file drivers accept and pass on (labels, env, tag).
_COMMON = ("mode", "max-buffer-size")
_ATTRIBUTES = ("env", "env-regex", "labels", "labels-regex", "tag")
_FILE_OPTIONS = ("max-file", "max-size", "compress", *_ATTRIBUTES)

LOCAL_MAX_SIZE = 20 * 1024 * 1024
LOCAL_MAX_FILE = 5

# The dual-logging cache: `cache-` and each of local's keys, and whether it is read.
CACHE_PREFIX = "cache-"
CACHE_DISABLED = CACHE_PREFIX + "disabled"
CACHE_OPTIONS = (CACHE_DISABLED, *(CACHE_PREFIX + key for key in _FILE_OPTIONS))

_DECIMAL = {"k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}
_BINARY = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


@dataclass(frozen=True)
class Rotation:
    """How a container's log is bounded.

    `max_size` 0: one file that grows without limit. `max_files` 1: the file is
    truncated when full (Docker's rotation with nothing kept). `keep` False: the
    driver stores nothing (`none`)."""

    max_size: int = 0
    max_files: int = 1
    compress: bool = False
    keep: bool = True

    @property
    def bounded(self) -> bool:
        return self.keep and self.max_size > 0

    @property
    def rotates(self) -> bool:
        """Rotated files are kept (and so need the daemon's care)."""
        return self.bounded and self.max_files > 1


UNBOUNDED = Rotation()


def parse_size(text: str, *, binary: bool = False) -> int:
    """A size as docker's go-units reads it: `FromHumanSize` (k = 1000, the default) or
    `RAMInBytes` (k = 1024); a `b`, `kb`/`kib` style suffix in any case."""
    table = _BINARY if binary else _DECIMAL
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise InvalidArgument(f"invalid size: '{text}'")
    if text[sep] != " ":
        number, suffix = text[: sep + 1], text[sep + 1 :]
    else:
        number, suffix = text[:sep], text[sep + 1 :]
    size = _parse_float(number)
    if size < 0:
        raise InvalidArgument(f"invalid size: '{text}'")
    if not suffix:
        return _int64(size, text)
    lowered = suffix.lower()
    if len(lowered) > 3:
        raise InvalidArgument(f"invalid suffix: '{suffix}'")
    if lowered[0] == "b":
        if len(lowered) > 1:
            raise InvalidArgument(f"invalid suffix: '{lowered}'")
        return _int64(size, text)
    if lowered[0] not in table or (
        (len(lowered) == 2 and lowered[1] != "b") or (len(lowered) == 3 and lowered[1:] != "ib")
    ):
        raise InvalidArgument(f"invalid suffix: '{lowered}'")
    return _int64(size * table[lowered[0]], text)


def _int64(value: float, text: str) -> int:
    if not value < 2**63:  # NaN and infinities too
        raise InvalidArgument(f"invalid size: '{text}'")
    return int(value)


# Go's strconv.ParseFloat: decimal forms, optional sign and exponent, Inf and NaN, and
# underscores only in based literals (not accepted here, as there).
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.I)


def _parse_float(text: str) -> float:
    if not _FLOAT.fullmatch(text):
        raise InvalidArgument(f'strconv.ParseFloat: parsing "{text}": invalid syntax')
    return float(text)


def _parse_int(text: str) -> int:
    """Go's strconv.Atoi."""
    if not re.fullmatch(r"[+-]?\d+", text):
        raise InvalidArgument(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise InvalidArgument(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def merge_defaults(
    driver: str, options: dict[str, str] | None, default_driver: str, defaults: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """moby's mergeAndVerifyLogConfig: the type and options a container really gets. The
    daemon's cache options fill a container's whatever its driver (the cache serves any
    plugin a container may name)."""
    driver = driver or default_driver
    merged = dict(options or {})
    for key, value in defaults.items():
        if driver == default_driver or key in CACHE_OPTIONS:
            merged.setdefault(key, value)
    return driver, merged


def validate(driver: str, options: dict[str, str]) -> Rotation:
    """Check `options` for `driver` as moby does (the common options and the cache's for
    every driver, the built-in drivers' own keys and values); returns the bounds of the
    engine's copy of the output: the driver's own for a built-in driver, the cache's for a
    plugin (whose other options are the plugin's to judge)."""
    if driver == NONE:
        return Rotation(keep=False)
    mode = options.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise InvalidArgument(f"logger: logging mode not supported: {mode}")
    if "max-buffer-size" in options:
        if mode != "non-blocking":
            raise InvalidArgument(
                "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
            )
        try:
            parse_size(options["max-buffer-size"], binary=True)
        except InvalidArgument as e:
            raise InvalidArgument(f"error parsing option max-buffer-size: {e.message}") from None
    cache = _cache(options)
    if driver not in BUILTIN:
        return cache
    for key in options:
        if key in _COMMON or key in _FILE_OPTIONS or key in CACHE_OPTIONS:
            continue
        if driver == LOCAL:
            raise InvalidArgument(f"unknown log opt '{key}' for log driver local")
        raise InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")
    if driver == LOCAL:
        return _local(options)
    return _json_file(options)


def _json_file(options: dict[str, str]) -> Rotation:
    """jsonfilelog.New's checks, in its order."""
    max_size = 0
    if "max-size" in options:
        max_size = parse_size(options["max-size"])
        if max_size <= 0:
            raise InvalidArgument("max-size must be a positive number")
    max_files = 1
    if "max-file" in options:
        max_files = _parse_int(options["max-file"])
        if max_files < 1:
            raise InvalidArgument("max-file cannot be less than 1")
    compress = False
    if "compress" in options:
        compress = _parse_bool(options["compress"])
        if compress and (max_files == 1 or not max_size):
            raise InvalidArgument(
                "compress cannot be true when max-file is less than 2 or max-size is not set"
            )
    if not max_size:
        return UNBOUNDED  # max-file alone bounds nothing (Docker)
    return Rotation(max_size, max_files, compress)


def _cache(options: dict[str, str]) -> Rotation:
    """The dual-logging cache's options: moby's check of `cache-disabled`, and local's
    rules and wording for the rest, naming the cache's keys."""
    disabled = options.get(CACHE_DISABLED, "")
    if disabled:
        try:
            _parse_bool(disabled)
        except InvalidArgument:
            raise InvalidArgument(
                f"invalid value for option {CACHE_DISABLED}: {disabled}"
            ) from None
    return _local(options, prefix=CACHE_PREFIX)


def cache_disabled(options: dict[str, str]) -> bool:
    """`cache-disabled` (checked already): `logs` may not read the engine's copy."""
    value = options.get(CACHE_DISABLED, "")
    return bool(value) and _parse_bool(value)


def _local(options: dict[str, str], prefix: str = "") -> Rotation:
    """local's newConfig and validateConfig, in their order (with `prefix`, of the keys
    that begin with it: the cache's)."""
    max_size, max_files, compress = LOCAL_MAX_SIZE, LOCAL_MAX_FILE, True
    size_key, file_key, compress_key = (prefix + k for k in ("max-size", "max-file", "compress"))
    if size_key in options:
        value = options[size_key]
        try:
            max_size = parse_size(value)
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid value for {size_key}: {value}: {e.message}") from None
    if file_key in options:
        value = options[file_key]
        try:
            max_files = _parse_int(value)
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid value for {file_key}: {value}: {e.message}") from None
    if compress_key in options:
        try:
            compress = _parse_bool(options[compress_key])
        except InvalidArgument as e:
            raise InvalidArgument(
                f"invalid boolean value for {compress_key}: {e.message}"
            ) from None
    if max_files < 0:
        raise InvalidArgument(f"{file_key} must not be negative")
    if compress and max_files <= 1:
        raise InvalidArgument("compression cannot be enabled when max file count is 1")
    # local's zero size rotates before every entry: one entry per file, as there.
    return Rotation(max(max_size, 1), max(max_files, 1), compress)
