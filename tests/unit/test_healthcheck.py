"""Healthcheck config (merge, validation, Docker's JSON) and the health state's rules."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.containers import config as cfg
from dockyard.containers import health, schema
from dockyard.containers.health import Health, ProbeResult, Probing
from dockyard.containers.schema import ContainerConfig, ContainerCreate, HealthConfig
from dockyard.errors import InvalidArgument
from dockyard.images.oci import rfc3339

S = 1_000_000_000
MS = 1_000_000
BUILT = {  # what the builder stores for `HEALTHCHECK --interval=5s --retries=2 CMD ...`
    "Test": ["CMD-SHELL", "curl -f localhost"],
    "Interval": 5 * S,
    "Timeout": 0,
    "StartPeriod": 0,
    "StartInterval": 0,
    "Retries": 2,
}


def container_config(request: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    return cfg.effective(
        schema.decode(ContainerCreate, {"Image": "x", "Cmd": ["sh"], **request}),
        schema.decode(ContainerConfig, image),
        image_name="x",
        ncpu=1,
        runtimes=("runc",),
        default_runtime="runc",
    ).config.to_wire()


def probing(**fields: Any) -> Probing:
    return Probing.of(HealthConfig(**fields))


# -- the config ----------------------------------------------------------------------


def test_the_image_healthcheck_is_inherited_in_dockers_shape() -> None:
    config = container_config({}, {"Healthcheck": BUILT})
    # Fields that are 0 are left out, as Docker's JSON leaves them out.
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "curl -f localhost"],
        "Interval": 5 * S,
        "Retries": 2,
    }


def test_request_fields_left_at_zero_take_the_image_values() -> None:
    config = container_config(
        {"Healthcheck": {"Timeout": 3 * S, "Interval": 0}}, {"Healthcheck": BUILT}
    )
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "curl -f localhost"],
        "Interval": 5 * S,
        "Timeout": 3 * S,
        "Retries": 2,
    }
    config = container_config(
        {"Healthcheck": {"Test": ["CMD", "true"], "Retries": 7, "StartInterval": S}},
        {"Healthcheck": BUILT},
    )
    assert config["Healthcheck"] == {
        "Test": ["CMD", "true"],
        "Interval": 5 * S,
        "StartInterval": S,
        "Retries": 7,
    }


def test_none_disables_and_no_healthcheck_anywhere_means_no_key() -> None:
    config = container_config({"Healthcheck": {"Test": ["NONE"]}}, {"Healthcheck": BUILT})
    assert config["Healthcheck"]["Test"] == ["NONE"]
    assert Probing.of(schema.decode(HealthConfig, config["Healthcheck"])).probes is False
    assert "Healthcheck" not in container_config({}, {})


@pytest.mark.parametrize(
    ("request_hc", "message"),
    [
        ({"Interval": 1}, "Interval in Healthcheck cannot be less than 1ms"),
        ({"Interval": -5 * S}, "Interval in Healthcheck cannot be less than 1ms"),
        ({"Timeout": MS - 1}, "Timeout in Healthcheck cannot be less than 1ms"),
        ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
        ({"StartPeriod": 10}, "StartPeriod in Healthcheck cannot be less than 1ms"),
        ({"StartInterval": 999}, "StartInterval in Healthcheck cannot be less than 1ms"),
        # moby's order: the interval is looked at before the retries
        ({"Interval": 1, "Retries": -1}, "Interval in Healthcheck cannot be less than 1ms"),
        ({"Retries": -1, "StartPeriod": 1}, "Retries in Healthcheck cannot be negative"),
        ({"Interval": "1s"}, "cannot unmarshal string into Healthcheck.Interval"),
        ({"Retries": True}, "cannot unmarshal bool into Healthcheck.Retries"),
        ({"Test": [1]}, "Healthcheck.Test"),
    ],
)
def test_bad_healthchecks_are_refused_with_mobys_messages(
    request_hc: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument) as error:
        container_config({"Healthcheck": {"Test": ["CMD", "true"], **request_hc}}, {})
    assert message in error.value.message


def test_the_minimum_durations_are_accepted() -> None:
    hc = {"Test": ["CMD", "true"], "Interval": MS, "Timeout": MS, "StartPeriod": MS}
    assert container_config({"Healthcheck": hc}, {})["Healthcheck"] == hc


def test_defaults_fill_what_is_still_zero() -> None:
    config = probing(test=["CMD", "true"])
    assert config.interval == 30 * S
    assert config.timeout == 30 * S
    assert config.start_period == 0
    assert config.start_interval == 5 * S
    assert config.retries == 3


def test_the_probe_command() -> None:
    assert probing(test=["CMD", "cat", "/x"]).command() == ["cat", "/x"]
    assert probing(test=["CMD-SHELL", "test -f /x"]).command() == [
        "/bin/sh",
        "-c",
        "test -f /x",
    ]
    assert probing(test=["CMD-SHELL", "x"]).command(["/bin/bash", "-ec"])[:2] == [
        "/bin/bash",
        "-ec",
    ]
    assert probing(test=["CMD"]).command() == []
    assert not probing(test=["FOO", "x"]).probes  # an unknown kind: no checks, as Docker


# -- the state -----------------------------------------------------------------------


def result(code: int, at_s: float = 100.0, output: str = "") -> ProbeResult:
    start = int(at_s * S)
    return ProbeResult(start, start + 50 * MS, code, output)


def test_failures_make_it_unhealthy_after_retries_and_a_success_heals() -> None:
    config = probing(test=["CMD", "x"], retries=2)
    state = Health()
    assert state.record(result(1), config, 0) is False
    assert (state.status, state.failing_streak) == ("starting", 1)
    assert state.record(result(1), config, 0) is True
    assert (state.status, state.failing_streak) == ("unhealthy", 2)
    assert state.record(result(-1), config, 0) is False
    assert state.failing_streak == 3
    assert state.record(result(0), config, 0) is True
    assert (state.status, state.failing_streak) == ("healthy", 0)
    assert state.record(result(0), config, 0) is False


def test_failures_in_the_start_period_do_not_count_until_a_success_ends_it() -> None:
    config = probing(test=["CMD", "x"], retries=1, start_period=60 * S)
    started = 100 * S
    state = Health()
    for second in (101, 110, 150):
        state.record(result(1, second), config, started)
    assert (state.status, state.failing_streak) == ("starting", 0)
    state.record(result(0, 151), config, started)
    assert state.status == "healthy"
    # Healthy once: the start period no longer shields failures.
    state.record(result(1, 152), config, started)
    assert (state.status, state.failing_streak) == ("unhealthy", 1)
    # After the start period, failures count even while starting.
    fresh = Health()
    fresh.record(result(1, 161), config, started)
    assert (fresh.status, fresh.failing_streak) == ("unhealthy", 1)


def test_the_log_keeps_the_last_five_probes_in_dockers_json() -> None:
    config = probing(test=["CMD", "x"])
    state = Health()
    for n in range(7):
        state.record(result(0, 100 + n, output=str(n)), config, 0)
    assert state.log is not None
    assert [entry["Output"] for entry in state.log] == ["2", "3", "4", "5", "6"]
    entry = state.log[-1]
    assert entry == {
        "Start": rfc3339(106 * S),
        "End": rfc3339(106 * S + 50 * MS),
        "ExitCode": 0,
        "Output": "6",
    }
    record = state.to_record()
    assert list(record) == ["Status", "FailingStreak", "Log"]
    assert Health.from_record(record) == state
    assert Health().to_record() == {"Status": "starting", "FailingStreak": 0, "Log": None}


def test_probes_come_at_the_start_interval_only_while_starting_in_the_start_period() -> None:
    config = probing(test=["CMD", "x"], interval=10 * S, start_period=60 * S)
    assert health.next_wait(config, "starting", 5 * S) == 5 * S  # the default start interval
    assert health.next_wait(config, "healthy", 5 * S) == 10 * S
    assert health.next_wait(config, "starting", 60 * S) == 10 * S
    assert health.next_wait(probing(test=["CMD", "x"]), "starting", 0) == 30 * S


def test_ps_status_suffix() -> None:
    assert health.status_suffix(None) == ""
    assert health.status_suffix({"Status": "starting"}) == " (health: starting)"
    assert health.status_suffix({"Status": "healthy"}) == " (healthy)"
    assert health.status_suffix({"Status": "unhealthy"}) == " (unhealthy)"


def test_the_health_filter() -> None:
    assert health.filter_matches(None, ["none"])
    assert not health.filter_matches(None, ["healthy"])
    assert health.filter_matches({"Status": "healthy"}, ["unhealthy", "healthy"])
    with pytest.raises(InvalidArgument) as error:
        health.filter_matches(None, ["sick"])
    assert error.value.message == (
        "invalid filter 'health=sick': invalid value for health (sick): "
        "must be one of none, starting, healthy, unhealthy"
    )


@pytest.mark.parametrize(
    ("timeout", "output", "text"),
    [
        (30 * S, "", "Health check exceeded timeout (30s)"),
        (S, "started\n", "Health check exceeded timeout (1s): started\n"),
        (1500 * MS, "", "Health check exceeded timeout (1.5s)"),
        (250 * MS, "", "Health check exceeded timeout (250ms)"),
        (90 * S, "", "Health check exceeded timeout (1m30s)"),
    ],
)
def test_the_timeout_message(timeout: int, output: str, text: str) -> None:
    assert health.timeout_message(timeout, output) == text


def test_output_is_cut_at_4096_bytes_and_marked() -> None:
    output = health.ProbeOutput()
    output.write(b"a" * 4000)
    output.write(b"b" * 200)
    output.write(b"c")
    assert output.text() == "a" * 4000 + "b" * 96 + "..."
    short = health.ProbeOutput()
    short.write("héllo\n".encode())
    assert short.text() == "héllo\n"


def test_state_times_parse_back_to_nanoseconds() -> None:
    ns = 1_700_000_000_123_456_789
    assert health.parse_time_ns(rfc3339(ns)) == ns
    assert health.parse_time_ns("2024-01-02T03:04:05Z") == 1_704_164_645 * S
    assert health.parse_time_ns("0001-01-01T00:00:00Z") == 0
