"""Shell-like word processing for Dockerfiles: quotes, escapes and `$var` substitution.

The builder expands variables itself in ADD, COPY, ENV, EXPOSE, FROM, LABEL,
STOPSIGNAL, USER, VOLUME, WORKDIR and ONBUILD; RUN, CMD and ENTRYPOINT are
left to the shell inside the container. The rules are those of POSIX sh as
Docker implements them (BuildKit's `shell.Lex`):

* `$name`, `${name}`; `${name:-word}` / `${name-word}` (default when unset or
  empty / unset), `${name:+word}` / `${name+word}` (alternative),
  `${name:?msg}` / `${name?msg}` (error), `${name#pat}`, `${name##pat}`,
  `${name%pat}`, `${name%%pat}`, `${name/pat/repl}`, `${name//pat/repl}`;
* single quotes keep everything literal, double quotes keep all but `$` and
  the escapes of `"`, `$` and the escape character itself;
* the escape character (`\\` or the Dockerfile's `# escape=`) quotes the next
  character; at the end of a word it is dropped.

A variable that is not set expands to the empty string. `words()` splits the
result on unquoted whitespace after substitution, as EXPOSE needs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from dockyard.errors import InvalidArgument

_SPECIAL_PARAMS = "@*#?-$!0"


class Lexer:
    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset: bool = False,
        keep_quotes: bool = False,
    ) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes  # keep the quote characters in the result
        self.raw_escapes = raw_escapes  # keep the escape characters in the result
        self.skip_unset = skip_unset  # leave references to unset variables as written
        self.keep_quotes = keep_quotes  # quotes are ordinary characters (heredoc bodies)

    def expand(self, word: str, env: Mapping[str, str]) -> str:
        """`word` with its variables substituted and its quoting removed."""
        return _Scan(self, word, env).run()[0]

    def words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """`text` substituted, then split into words on unquoted whitespace."""
        return _Scan(self, text, env).run()[1]


class _Words:
    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf = []
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_text(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw(self, text: str) -> None:
        self.buf.append(text)
        self.in_word = True

    def done(self) -> list[str]:
        if self.buf:
            word = "".join(self.buf)
            if word:
                self.words.append(word)
            self.buf = []
            self.in_word = False
        return self.words


class _Scan:
    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes

    def run(self) -> tuple[str, list[str]]:
        try:
            return self._until(None, self.raw_escapes)
        except InvalidArgument as e:
            raise InvalidArgument(f"failed to process {self.text!r}: {e.message}") from None

    # -- characters ---------------------------------------------------------

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _next(self) -> str:
        ch = self._peek()
        if ch:
            self.pos += 1
        return ch

    # -- words --------------------------------------------------------------

    def _until(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            result: list[str] = []
            words = _Words()
            while (ch := self._peek()) != "":
                if stop is not None and ch == stop:
                    self.pos += 1
                    return "".join(result), words.done()
                if ch == "$":
                    value = self._dollar()
                    result.append(value)
                    words.add_text(value)
                elif ch == "<":
                    value = self._maybe_heredoc()
                    result.append(value)
                    words.add_raw(value)
                elif ch in "'\"" and not self.lx.keep_quotes:
                    value = self._single_quoted() if ch == "'" else self._double_quoted()
                    result.append(value)
                    words.add_raw(value)
                else:
                    self.pos += 1
                    if ch == self.lx.escape:
                        if self.raw_escapes:
                            words.add_raw(ch)
                            result.append(ch)
                        ch = self._next()
                        if not ch:
                            break
                        words.add_raw(ch)
                    else:
                        words.add_char(ch)
                    result.append(ch)
            if stop is not None:
                raise InvalidArgument(
                    f"unexpected end of statement while looking for matching {stop}"
                )
            return "".join(result), words.done()
        finally:
            self.raw_escapes = saved

    def _single_quoted(self) -> str:
        # Everything up to the next ' is literal; nothing escapes a '.
        quote = self._next()
        out = [quote] if self.lx.raw_quotes else []
        while True:
            ch = self._next()
            if not ch:
                raise InvalidArgument(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def _double_quoted(self) -> str:
        quote = self._next()
        out = [quote] if self.lx.raw_quotes else []
        while True:
            ch = self._peek()
            if not ch:
                raise InvalidArgument(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.pos += 1
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            self.pos += 1
            if ch == self.lx.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self._peek()
                if not following:
                    continue  # a trailing escape is dropped; the loop then fails on EOF
                if following in ('"', "$", self.lx.escape):
                    ch = self._next()
            out.append(ch)

    def _maybe_heredoc(self) -> str:
        self.pos += 1
        if self._peek() != "<":
            return "<"
        self.pos += 1
        start = self.pos
        while self._peek() and self._peek() in " \t":
            self.pos += 1
        return "<<" + self.text[start : self.pos]

    def _name(self) -> str:
        start = self.pos
        ch = self._peek()
        if ch.isdigit():
            while self._peek().isdigit():
                self.pos += 1
            return self.text[start : self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            self.pos += 1
            return ch
        while (ch := self._peek()) and (ch.isalnum() or ch == "_"):
            self.pos += 1
        return self.text[start : self.pos]

    def _get(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def _dollar(self) -> str:
        self.pos += 1  # the $
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value, found = self._get(name)
            if not found and self.lx.skip_unset:
                return "$" + name
            return value
        self.pos += 1  # the {
        ch = self._peek()
        if not ch:
            raise InvalidArgument("syntax error: missing '}'")
        if ch in "{}:":
            raise InvalidArgument("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        if not ch:
            raise InvalidArgument("syntax error: missing '}'")
        if ch == "}":
            value, found = self._get(name)
            if not found and self.lx.skip_unset:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self._replace(name)
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self._next()
            modifier += ch
        if ch not in "+-?#%" or not ch:
            raise InvalidArgument(f"unsupported modifier ({modifier}) in substitution")
        pattern_op = ch in "#%"
        if null_is_unset and pattern_op:
            raise InvalidArgument(f"unsupported modifier ({modifier}) in substitution")
        word = self._word_until_brace(pattern_op)
        value, found = self._get(name)
        if self.lx.skip_unset and not found:
            return "${" + name + modifier + word + "}"
        empty = not found or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not found:
                raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise InvalidArgument(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        if ch == "%":
            return _trim_suffix(word, value, greedy)
        return _trim_prefix(word, value, greedy)

    def _word_until_brace(self, raw_escapes: bool) -> str:
        try:
            return self._until("}", raw_escapes)[0]
        except InvalidArgument:
            if not self._peek():
                raise InvalidArgument("syntax error: missing '}'") from None
            raise

    def _replace(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self.pos += 1
        try:
            pattern = self._until("/", True)[0]
        except InvalidArgument:
            if not self._peek():
                raise InvalidArgument("syntax error: missing '/' in ${}") from None
            raise
        replacement = self._word_until_brace(True)
        value, found = self._get(name)
        if self.lx.skip_unset and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return regex.sub(lambda _m: replacement, value)
        return regex.sub(lambda _m: replacement, value, count=1)


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard pattern (`*`, `?`, `\\` escapes; no brackets) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in ("}", "/"):
                continue  # escaped only for the ${...} syntax
            if following not in ("*", "?", "\\"):
                raise InvalidArgument(f"invalid pattern ({pattern}) in substitution")
            out.append(re.escape(following))
            i += 1
        else:
            out.append(re.escape(ch))
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as e:
        raise InvalidArgument(f"invalid pattern ({pattern}) in substitution: {e}") from None


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _pattern_regex(pattern, greedy=greedy, anchored=True).match(value)
    return value[match.end() :] if match else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse a pattern but keep each escape in front of the character it escapes.
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # The shortest (or longest) match at the end: match the reversed pattern at
    # the start of the reversed value.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
