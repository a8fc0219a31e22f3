"""The Dockerfile parser and instruction checks: layout, forms, heredocs, errors naming lines."""

from __future__ import annotations

import pytest

from dockyard.build import instructions as ins
from dockyard.build.parser import parse
from dockyard.errors import InvalidArgument


def stages(text: str) -> tuple[list[ins.Arg], list[ins.Stage]]:
    return ins.parse_stages(parse(text))


def commands(text: str) -> list[ins.Instruction]:
    return stages(text)[1][0].commands


def test_escape_directive_changes_the_continuation_character() -> None:
    df = parse("# escape=`\nFROM x\nRUN echo a `\n  b\nRUN dir c:\\windows\\\n")
    assert df.escape == "`"
    assert [n.original for n in df.nodes[1:]] == ["RUN echo a   b", "RUN dir c:\\windows\\"]


def test_a_directive_after_a_comment_is_only_a_comment() -> None:
    df = parse("# hello\n# escape=`\nFROM x\nRUN a \\\n  b\n")
    assert df.escape == "\\"
    assert df.nodes[1].original == "RUN a   b"


def test_a_directive_after_a_blank_line_is_a_comment() -> None:
    assert parse("\n# escape=`\nFROM x\n").escape == "\\"


def test_duplicate_directive_is_an_error_naming_the_line() -> None:
    with pytest.raises(InvalidArgument, match="line 2: only one escape parser directive"):
        parse("# escape=\\\n# escape=`\nFROM x\n")


def test_directive_keys_are_case_insensitive_and_whitespace_tolerant() -> None:
    df = parse("#  ESCAPE =  `\n# Syntax=docker/dockerfile:1\nFROM x\n")
    assert df.escape == "`" and df.directives["syntax"] == "docker/dockerfile:1"


def test_comments_inside_a_continued_instruction_are_dropped() -> None:
    df = parse("FROM x\nRUN apt-get update \\\n  # a comment\n  && echo done\n")
    assert df.nodes[1].original == "RUN apt-get update   && echo done"
    assert (df.nodes[1].start_line, df.nodes[1].end_line) == (2, 4)


def test_empty_continuation_lines_warn() -> None:
    df = parse("FROM x\nRUN a \\\n\n  b\n")
    assert df.nodes[1].original == "RUN a   b"
    assert df.warnings and "Empty continuation line" in df.warnings[0]


def test_hash_inside_a_line_is_an_ordinary_character() -> None:
    (run,) = commands("FROM x\nRUN echo a # not a comment\n")
    assert isinstance(run, ins.Run) and run.command == ("echo a # not a comment",)


def test_keywords_are_case_insensitive_and_leading_blanks_ignored() -> None:
    (run,) = commands("from x\n   run echo hi\n")
    assert isinstance(run, ins.Run) and run.command == ("echo hi",)


def test_byte_order_mark_is_ignored() -> None:
    assert parse("\ufeffFROM x\n").nodes[0].keyword == "FROM"


def test_single_quoted_json_is_shell_form() -> None:
    (cmd,) = commands("FROM x\nCMD ['a','b']\n")
    assert isinstance(cmd, ins.Cmd) and cmd.shell_form and cmd.command == ("['a','b']",)


def test_json_array_is_exec_form() -> None:
    cmd, entry = commands('FROM x\nCMD ["a", "b c"]\nENTRYPOINT ["/bin/e"]\n')
    assert isinstance(cmd, ins.Cmd) and not cmd.shell_form and cmd.command == ("a", "b c")
    assert isinstance(entry, ins.Entrypoint) and entry.command == ("/bin/e",)


def test_json_array_of_non_strings_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match=r"line 2: .*arrays must be comprised of strings"):
        parse("FROM x\nCMD [1, 2]\n")


def test_env_forms() -> None:
    (new, legacy) = commands(
        'FROM x\nENV A=1 B="two words" C=three\\ words\nENV D value with spaces\n'
    )
    assert isinstance(new, ins.Env) and isinstance(legacy, ins.Env)
    assert new.pairs == (("A", "1"), ("B", '"two words"'), ("C", "three\\ words"))
    assert legacy.pairs == (("D", "value with spaces"),)


def test_env_pair_without_equals_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="line 2: Syntax error - can't find ="):
        parse("FROM x\nENV A=1 B\n")


def test_arg_with_and_without_defaults() -> None:
    meta, st = stages("ARG A\nARG B=2 C=\nFROM x\n")
    assert [a.pairs for a in meta] == [(("A", None),), (("B", "2"), ("C", ""))]
    assert len(st) == 1


def test_flags_are_parsed_and_checked() -> None:
    (copy,) = commands("FROM x\nCOPY --from=build --chown=app:app --chmod=0755 --link a b /dst/\n")
    assert isinstance(copy, ins.Copy)
    assert (copy.from_, copy.chown, copy.chmod, copy.link) == ("build", "app:app", "0755", True)
    assert copy.sources == ("a", "b") and copy.dest == "/dst/"
    with pytest.raises(InvalidArgument, match="line 2: unknown flag: --frm"):
        parse_and_check("FROM x\nCOPY --frm=a b c\n")
    with pytest.raises(InvalidArgument, match="unknown flag: --from"):
        parse_and_check("FROM x\nADD --from=a b c\n")


def test_buildkit_copy_flags_that_change_what_is_copied_are_refused() -> None:
    for line in ("COPY --exclude=*.txt . /dst/", "ADD --exclude=x . /dst/", "COPY --parents a/b /"):
        flag = "exclude" if "exclude" in line else "parents"
        with pytest.raises(InvalidArgument, match=f"--{flag} is not supported by Dockyard"):
            parse_and_check(f"FROM x\n{line}\n")
    (add,) = commands("FROM x\nADD --checksum=sha256:abc https://e.x/f /f\n")
    assert isinstance(add, ins.Copy) and add.checksum == "sha256:abc"


def parse_and_check(text: str) -> None:
    ins.parse_stages(parse(text))


def test_copy_json_form_and_one_argument() -> None:
    (copy,) = commands('FROM x\nCOPY ["a b", "/dst dir/"]\n')
    assert isinstance(copy, ins.Copy) and copy.sources == ("a b",) and copy.dest == "/dst dir/"
    with pytest.raises(InvalidArgument, match="line 2: COPY requires at least two arguments"):
        parse_and_check("FROM x\nCOPY onlyone\n")


def test_run_heredoc_body_is_attached() -> None:
    df = parse("FROM x\nRUN <<EOF\necho a\necho b\nEOF\nCMD x\n")
    run = df.nodes[1]
    assert run.heredocs[0].name == "EOF" and run.heredocs[0].content == "echo a\necho b\n"
    assert (run.start_line, run.end_line) == (2, 5)
    assert df.nodes[2].keyword == "CMD"


def test_heredoc_chomp_and_quoted_delimiter() -> None:
    (copy,) = commands('FROM x\nCOPY <<-"EOT" /f\n\tline $A\n\t\tdeep\n\tEOT\n')
    assert isinstance(copy, ins.Copy)
    assert copy.contents == (ins.Source("EOT", "line $A\ndeep\n", expand=False),)


def test_several_heredocs_in_one_instruction() -> None:
    df = parse("FROM x\nCOPY <<A <<B /dir/\none\nA\ntwo\nB\n")
    assert [(h.name, h.content) for h in df.nodes[1].heredocs] == [("A", "one\n"), ("B", "two\n")]


def test_unterminated_heredoc_names_its_line() -> None:
    with pytest.raises(InvalidArgument, match="line 2: unterminated heredoc"):
        parse("FROM x\nRUN <<EOF\necho\n")


def test_heredoc_in_json_form_is_not_a_heredoc() -> None:
    (run,) = commands('FROM x\nRUN ["echo", "<<EOF"]\n')
    assert isinstance(run, ins.Run) and run.heredocs == ()


def test_unknown_instruction_names_the_line_and_suggests() -> None:
    with pytest.raises(InvalidArgument, match=r"line 3: unknown instruction: RUNN \(did you mean"):
        parse_and_check("FROM x\n\nRUNN echo\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM\n", "FROM requires either one or three arguments"),
        ("FROM a b\n", "FROM requires either one or three arguments"),
        ("FROM a AS 1bad\n", "invalid name for build stage"),
        ("RUN x\n", "no build stage in current context"),
        ("FROM a\nWORKDIR\n", "WORKDIR requires exactly one argument"),
        ("FROM a\nSHELL /bin/bash -c\n", "SHELL requires the arguments to be in JSON form"),
        ("FROM a\nHEALTHCHECK NONE x\n", "HEALTHCHECK NONE takes no arguments"),
        ("FROM a\nHEALTHCHECK --interval=0.5ms CMD x\n", "cannot be less than 1ms"),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD"),
        ("FROM a\nONBUILD FROM x\n", "FROM isn't allowed as an ONBUILD trigger"),
        ("FROM a\nRUN --mount=type=nfs,target=/x true\n", 'unsupported mount type "nfs"'),
        ("FROM a\nRUN --mount=type=bind,target=/x,size=1m true\n", "unexpected key 'size'"),
        ("FROM a\nRUN --mount=type=tmpfs,target=/x,uid=1 true\n", "uid not allowed"),
        ("FROM a\nRUN --mount=type=secret,id=a,source=b true\n", "both source and id"),
        ("FROM a\nRUN --mount=type=cache,target=/x,bogus=1 true\n", "unexpected key 'bogus'"),
        ("FROM a\nRUN --device=/dev/x true\n", "--device option of RUN"),
    ],
)
def test_bad_instructions_are_refused_with_their_line(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        parse_and_check(text)
    assert "line " in caught.value.message


def test_empty_file_has_no_instructions() -> None:
    with pytest.raises(InvalidArgument, match="file with no instructions"):
        parse("# just a comment\n\n")


def test_stages_and_names() -> None:
    _meta, st = stages("ARG V=1\nFROM a AS Build\nRUN x\nFROM build\nCOPY --from=0 /a /b\n")
    assert [s.name for s in st] == ["build", ""]
    assert [len(s.commands) for s in st] == [1, 1]
    assert st[0].start.base == "a" and st[1].start.base == "build"


def test_healthcheck_options_in_nanoseconds() -> None:
    (hc, none) = commands(
        "FROM a\nHEALTHCHECK --interval=1m30s --timeout=3s --start-period=250ms --retries=4 "
        'CMD ["curl", "-f", "x"]\nHEALTHCHECK NONE\n'
    )
    assert isinstance(hc, ins.Healthcheck) and isinstance(none, ins.Healthcheck)
    assert hc.test == ("CMD", "curl", "-f", "x")
    assert (hc.interval, hc.timeout, hc.start_period, hc.retries) == (
        90_000_000_000,
        3_000_000_000,
        250_000_000,
        4,
    )
    assert none.test == ("NONE",)


def test_onbuild_keeps_its_trigger_text() -> None:
    (onbuild,) = commands("FROM a\nONBUILD RUN echo $HOME\n")
    assert isinstance(onbuild, ins.Onbuild) and onbuild.expression == "RUN echo $HOME"
    trigger = ins.trigger(onbuild.expression)
    assert isinstance(trigger, ins.Run) and trigger.command == ("echo $HOME",)


def test_expose_and_volume_words() -> None:
    expose, volume, volume_json = commands(
        'FROM a\nEXPOSE 80 53/udp\nVOLUME /a /b\nVOLUME ["/c d"]\n'
    )
    assert isinstance(expose, ins.Expose) and expose.ports == ("53/udp", "80")
    assert isinstance(volume, ins.Volume) and volume.paths == ("/a", "/b")
    assert isinstance(volume_json, ins.Volume) and volume_json.paths == ("/c d",)


def test_run_mount_specifications_take_buildkits_defaults() -> None:
    from dockyard.build import runmount

    bind = runmount.parse("target=/src")
    assert (bind.type, bind.read_only) == ("bind", True)
    cache = runmount.parse("type=cache,target=/root/.cache,sharing=LOCKED,mode=0700,uid=5")
    assert (cache.read_only, cache.sharing, cache.mode, cache.uid) == (False, "locked", 0o700, 5)
    assert cache.cache_id == "/root/.cache"
    assert runmount.parse("type=bind,target=/x,rw").read_only is False
    assert runmount.parse("type=tmpfs,target=/t,size=1m").size == 1 << 20
    secret = runmount.parse("type=secret,id=npmrc,required")
    assert (secret.required, secret.secret_target()) == (True, "/run/secrets/npmrc")
    assert runmount.parse("type=secret,target=/etc/tok").secret_id == "tok"
    assert runmount.parse("type=secret,id=t,env=T").secret_target() == ""
