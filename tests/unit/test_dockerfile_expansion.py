"""Variable substitution and quoting in Dockerfile words (spec BLD-4)."""

from __future__ import annotations

import pytest

from dockyard.build import imageconfig
from dockyard.build import instructions as ins
from dockyard.build.expansion import Lexer
from dockyard.build.parser import parse
from dockyard.errors import InvalidArgument

LEX = Lexer()


@pytest.mark.parametrize(
    ("word", "unset", "empty", "set_"),
    [
        ("${x:-d}", "d", "d", "v"),
        ("${x-d}", "d", "", "v"),
        ("${x:+a}", "", "", "a"),
        ("${x+a}", "", "a", "a"),
        ("$x", "", "", "v"),
        ("${x}", "", "", "v"),
    ],
)
def test_default_and_alternative_forms(word: str, unset: str, empty: str, set_: str) -> None:
    assert LEX.expand(word, {}) == unset
    assert LEX.expand(word, {"x": ""}) == empty
    assert LEX.expand(word, {"x": "v"}) == set_


def test_escaped_dollar_and_quotes() -> None:
    env = {"x": "v"}
    assert LEX.expand("\\$x", env) == "$x"
    assert LEX.expand("'$x'", env) == "$x"
    assert LEX.expand('"$x y"', env) == "v y"
    assert LEX.expand('"a \\" b \\$x \\n"', env) == 'a " b $x \\n'
    assert LEX.expand("a\\ b", env) == "a b"


def test_words_split_after_substitution() -> None:
    assert LEX.words("$PORTS 53/udp", {"PORTS": "80 443"}) == ["80", "443", "53/udp"]
    assert LEX.words('"a b" c', {}) == ["a b", "c"]


def test_pattern_operators() -> None:
    env = {"p": "/usr/local/bin/tool.tar.gz"}
    assert LEX.expand("${p#*/}", env) == "usr/local/bin/tool.tar.gz"
    assert LEX.expand("${p##*/}", env) == "tool.tar.gz"
    assert LEX.expand("${p%.*}", env) == "/usr/local/bin/tool.tar"
    assert LEX.expand("${p%%.*}", env) == "/usr/local/bin/tool"
    assert LEX.expand("${p/local/LOCAL}", env) == "/usr/LOCAL/bin/tool.tar.gz"
    assert LEX.expand("${p//o/0}", env) == "/usr/l0cal/bin/t00l.tar.gz"


def test_required_variable_errors() -> None:
    with pytest.raises(InvalidArgument, match="x: is not allowed to be unset"):
        LEX.expand("${x?}", {})
    with pytest.raises(InvalidArgument, match="x: custom"):
        LEX.expand("${x:?custom}", {"x": ""})


@pytest.mark.parametrize("word", ["${x", "${}", "${:x}", "'open", '"open'])
def test_syntax_errors(word: str) -> None:
    with pytest.raises(InvalidArgument):
        LEX.expand(word, {})


def test_backtick_escape_lexer() -> None:
    assert Lexer("`").expand("a`$x\\n", {"x": "v"}) == "a$x\\n"


def test_env_sees_old_values_for_the_whole_instruction() -> None:
    (env,) = ins.parse_stages(parse("FROM x\nENV abc=bye def=$abc\n"))[1][0].commands
    config = {"Env": ["abc=hello"]}
    values = imageconfig.env_map(config)
    expanded = env.expand(lambda word: LEX.expand(word, values))
    new, _ = imageconfig.apply(config, expanded)
    assert new["Env"] == ["abc=bye", "def=hello"]


def test_heredoc_lexer_keeps_quotes() -> None:
    assert Lexer(keep_quotes=True).expand("say \"$x\" '$x'", {"x": "v"}) == "say \"v\" 'v'"
