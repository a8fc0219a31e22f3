"""How instructions change an image config, and the history Docker writes (BLD-2, 3, 11)."""

from __future__ import annotations

import pytest

from dockyard.build import imageconfig
from dockyard.build import instructions as ins
from dockyard.build.parser import parse
from dockyard.errors import InvalidArgument
from dockyard.images.changes import apply_changes


def step(text: str) -> ins.Instruction:
    return ins.parse_stages(parse("FROM x\n" + text + "\n"))[1][0].commands[0]


def apply(config: dict, text: str, *, cmd_set: bool = False) -> tuple[dict, str]:
    return imageconfig.apply(config, step(text), cmd_set=cmd_set)


def test_cmd_forms_and_history_text() -> None:
    config, comment = apply({}, "CMD echo hi")
    assert config["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert comment == '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo hi"]'
    config, _ = apply({}, 'CMD ["a", "b"]')
    assert config["Cmd"] == ["a", "b"]
    config, _ = apply({}, "CMD ['a']")
    assert config["Cmd"] == ["/bin/sh", "-c", "['a']"]


def test_shell_form_uses_the_stage_shell() -> None:
    config, _ = apply({}, 'SHELL ["/bin/bash", "-eu", "-c"]')
    assert config["Shell"] == ["/bin/bash", "-eu", "-c"]
    config, comment = apply(config, "CMD run.sh")
    assert config["Cmd"] == ["/bin/bash", "-eu", "-c", "run.sh"]
    assert comment.startswith("/bin/bash -eu -c #(nop)  CMD")


def test_entrypoint_clears_an_inherited_cmd_but_not_one_set_in_the_stage() -> None:
    base = {"Cmd": ["sh"]}
    cleared, _ = apply(base, 'ENTRYPOINT ["/e"]')
    assert cleared["Entrypoint"] == ["/e"] and cleared["Cmd"] is None
    kept, _ = apply(base, 'ENTRYPOINT ["/e"]', cmd_set=True)
    assert kept["Cmd"] == ["sh"]
    shell, _ = apply({}, "ENTRYPOINT exec /e")
    assert shell["Entrypoint"] == ["/bin/sh", "-c", "exec /e"]


def test_env_replaces_or_appends_and_label_merges() -> None:
    config, comment = apply({"Env": ["A=0", "PATH=/bin"]}, "ENV A=1 B=2")
    assert config["Env"] == ["A=1", "PATH=/bin", "B=2"]
    assert comment == "/bin/sh -c #(nop)  ENV A=1 B=2"
    config, comment = apply({"Labels": {"a": "old", "keep": "1"}}, "LABEL a=new b=2")
    assert config["Labels"] == {"a": "new", "keep": "1", "b": "2"}
    assert comment == "/bin/sh -c #(nop)  LABEL a=new b=2"


def test_healthcheck_in_nanoseconds_and_none() -> None:
    config, comment = apply({}, "HEALTHCHECK --interval=5s --retries=2 CMD curl -f x")
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "curl -f x"],
        "Interval": 5_000_000_000,
        "Timeout": 0,
        "StartPeriod": 0,
        "StartInterval": 0,
        "Retries": 2,
    }
    assert "Interval:5s" in comment and "Timeout:0s" in comment
    config, _ = apply(config, "HEALTHCHECK NONE")
    assert config["Healthcheck"] == {"Test": ["NONE"]}


def test_volume_user_stopsignal_onbuild() -> None:
    config, _ = apply({}, "VOLUME /a /b")
    assert config["Volumes"] == {"/a": {}, "/b": {}}
    config, _ = apply(config, "USER app:app")
    assert config["User"] == "app:app"
    config, _ = apply(config, "STOPSIGNAL SIGQUIT")
    assert config["StopSignal"] == "SIGQUIT"
    config, _ = apply(config, "ONBUILD RUN echo x")
    assert config["OnBuild"] == ["RUN echo x"]
    with pytest.raises(InvalidArgument, match="Invalid signal"):
        apply({}, "STOPSIGNAL SIGNOPE")


def test_expose_ranges_and_protocols() -> None:
    config, comment = imageconfig.expose({}, ["80", "53/UDP", "7000-7002/tcp"])
    assert set(config["ExposedPorts"]) == {"80/tcp", "53/udp", "7000/tcp", "7001/tcp", "7002/tcp"}
    assert comment.endswith("EXPOSE 80 53/UDP 7000-7002/tcp")
    with pytest.raises(InvalidArgument):
        imageconfig.expose({}, ["80/foo"])


def test_workdir_is_relative_to_the_previous_one() -> None:
    config, comment = imageconfig.workdir({}, "/app")
    assert config["WorkingDir"] == "/app" and comment == "/bin/sh -c #(nop) WORKDIR /app"
    config, _ = imageconfig.workdir(config, "sub/../src")
    assert config["WorkingDir"] == "/app/src"


def test_begin_stage_adds_a_default_path_only_when_missing() -> None:
    assert imageconfig.begin_stage(None)["Env"] == [f"PATH={imageconfig.DEFAULT_PATH}"]
    assert imageconfig.begin_stage({"Env": ["PATH=/x"]})["Env"] == ["PATH=/x"]


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (5_000_000_000, "5s"),
        (90_000_000_000, "1m30s"),
        (1_500_000_000, "1.5s"),
        (250_000_000, "250ms"),
        (3_600_000_000_000, "1h0m0s"),
    ],
)
def test_go_durations(ns: int, text: str) -> None:
    assert imageconfig.go_duration(ns) == text


def test_changes_for_import_and_commit() -> None:
    config = apply_changes(
        {"Env": ["A=1"]},
        [
            'CMD ["run", "me"]',
            "ENV B=$A-two",
            "EXPOSE 8080 9000-9001/udp",
            'VOLUME ["/data"]',
            "WORKDIR /srv",
            'LABEL "x y"="1 2"',
        ],
    )
    assert config["Cmd"] == ["run", "me"]
    assert config["Env"] == ["A=1", "B=1-two"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9000/udp", "9001/udp"}
    assert config["Volumes"] == {"/data": {}} and config["WorkingDir"] == "/srv"
    assert config["Labels"] == {"x y": "1 2"}
    with pytest.raises(InvalidArgument, match="RUN is not a valid change command"):
        apply_changes({}, ["RUN echo"])
