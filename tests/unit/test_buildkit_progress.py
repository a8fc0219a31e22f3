"""How a build is drawn on BuildKit's door (`buildkit.progress`) and how buildx's
frontend options become the builder's (`buildkit.frontend.build_options`)."""

from __future__ import annotations

import asyncio

import pytest

from dockyard.build import instructions, parser
from dockyard.build.cache import State
from dockyard.build.progress import Step
from dockyard.buildkit import progress
from dockyard.buildkit.frontend import build_options
from dockyard.buildkit.pb import control_pb2
from dockyard.errors import DockyardError, InvalidArgument

STATE = State("sha256:" + "0" * 64, {}, ())


def drawn(dockerfile: str, *, cached: set[str] = frozenset()) -> list[control_pb2.Vertex]:
    """The vertexes a build of `dockerfile` shows, each in its final form, in order."""
    _, stages = instructions.parse_stages(parser.parse(dockerfile))
    log = progress.StatusLog()
    vertexes = progress.VertexProgress(progress.Graph(log, "ref"))

    async def build() -> None:
        total = sum(1 + len(s.commands) for s in stages)
        number = 0
        names: set[str] = set()
        for stage in stages:
            number += 1
            from_stage = stage.start.base.lower() in names
            await vertexes.step(
                Step(number, total, stage.start, stage, len(stages), from_stage=from_stage)
            )
            await vertexes.step_done(STATE)
            for command in stage.commands:
                number += 1
                await vertexes.step(Step(number, total, command, stage, len(stages)))
                if command.text in cached:
                    await vertexes.cached()
                else:
                    await vertexes.output(1, b"out\n")
                await vertexes.step_done(STATE)
            names.add(stage.name)

    asyncio.run(build())
    final: dict[str, control_pb2.Vertex] = {}
    for update in log.updates:
        for vertex in update.vertexes:
            final[vertex.digest] = vertex
    return list(final.values())


def test_one_stage_numbers_the_from_and_the_filesystem_steps() -> None:
    vertexes = drawn(
        'FROM demo/busybox:1\nENV A=1\nWORKDIR /app\nCOPY . .\nRUN make\nCMD ["app"]\n',
        cached={"COPY . ."},
    )
    assert [v.name for v in vertexes] == [
        "[1/4] FROM docker.io/demo/busybox:1",
        "[2/4] WORKDIR /app",
        "[3/4] COPY . .",
        "[4/4] RUN make",
    ]
    assert [v.cached for v in vertexes] == [False, False, True, False]
    assert all(v.HasField("started") and v.HasField("completed") for v in vertexes)
    assert len({v.digest for v in vertexes}) == 4


def test_several_stages_are_named_and_a_stage_started_from_another_shows_no_from() -> None:
    vertexes = drawn(
        "FROM demo/busybox:1 AS build\nRUN make\n"
        "FROM build\nRUN test\n"
        "FROM scratch AS final\nCOPY --from=build /app /app\n"
    )
    assert [v.name for v in vertexes] == [
        "[build 1/2] FROM docker.io/demo/busybox:1",
        "[build 2/2] RUN make",
        "[stage-1 2/2] RUN test",
        "[final 1/2] FROM scratch",
        "[final 2/2] COPY --from=build /app /app",
    ]


def test_a_failed_step_carries_the_error_and_a_cancelled_one_reads_canceled() -> None:
    log = progress.StatusLog()
    vertexes = progress.VertexProgress(progress.Graph(log, "ref"))
    _, stages = instructions.parse_stages(parser.parse("FROM demo/busybox:1\nRUN false\n"))

    async def run() -> None:
        await vertexes.step(Step(1, 2, stages[0].commands[0], stages[0]))
        vertexes.fail("exit code: 1")
        vertexes.fail("again")  # nothing is open any more

    asyncio.run(run())
    last = log.updates[-1].vertexes[0]
    assert last.error == "exit code: 1" and last.HasField("completed")
    assert len(log.updates) == 2


def test_a_vertex_log_is_clipped_at_two_megabytes() -> None:
    log = progress.StatusLog()
    vertex = progress.Graph(log, "ref").vertex("[1/1] RUN noisy")
    for _ in range(5):
        vertex.write(1, b"x" * (1 << 20))
    logged = b"".join(entry.msg for update in log.updates for entry in update.logs)
    assert logged == b"x" * (2 << 20) + b"\n[output clipped, log limit 2MiB reached]\n"


def test_status_replays_from_the_start_in_bounded_messages_then_follows() -> None:
    log = progress.StatusLog()
    vertex = progress.Graph(log, "ref").vertex("[1/1] RUN noisy").start()
    for _ in range(3):
        vertex.write(1, b"y" * 600_000)

    async def follow() -> list[control_pb2.StatusResponse]:
        received = []

        async def reader() -> None:
            async for update in log.follow():
                received.append(update)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)
        vertex.complete()
        log.close()
        await task
        return received

    received = asyncio.run(follow())
    assert len(received) >= 2  # 1.8 MB of logs do not travel as one message
    assert all(r.ByteSize() < 2 * progress.MERGE_LIMIT for r in received)
    assert sum(len(e.msg) for r in received for e in r.logs) == 1_800_000
    assert received[-1].vertexes[-1].HasField("completed")


def test_frontend_options_become_build_options() -> None:
    options = build_options(
        {
            "filename": "Build.dockerfile",
            "target": "final",
            "build-arg:VERSION": "1.2",
            "label:org.example": "x",
            "no-cache": "build,Test",
            "add-hosts": "db=10.0.0.5,cache=10.0.0.6",
            "force-network-mode": "none",
            "shm-size": "1048576",
            "ulimit": "nofile=1024:2048",
            "image-resolve-mode": "pull",
            "attest:provenance": "mode=min",
        }
    )
    assert options.dockerfile == "Build.dockerfile"
    assert options.target == "final"
    assert options.build_args == {"VERSION": "1.2"}
    assert options.labels == {"org.example": "x"}
    assert options.no_cache_stages == {"build", "test"} and not options.no_cache
    assert options.network_mode == "none"
    assert options.pull
    assert options.host_config.extra_hosts == ["db:10.0.0.5", "cache:10.0.0.6"]
    assert options.host_config.shm_size == 1048576
    assert options.host_config.ulimits is not None
    assert options.host_config.ulimits[0].name == "nofile"
    assert build_options({"no-cache": ""}).no_cache


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"platform": "linux/amd64,linux/arm64"}, "several platforms"),
        ({"force-network-mode": "bridge"}, "invalid netmode bridge"),
        ({"add-hosts": "nohost"}, "invalid key-value pair nohost"),
        ({"context:base": "docker-image://x"}, "--build-context base"),
        ({"context": "https://example.com/repo.git"}, "remote or streamed build context"),
        ({"requestid": "frontend.outline"}, "frontend.outline requests"),
    ],
)
def test_frontend_options_that_cannot_be_honoured_are_refused(
    attrs: dict[str, str], message: str
) -> None:
    with pytest.raises(DockyardError) as raised:
        build_options(attrs)
    assert message in raised.value.message


def test_the_build_platform_is_the_hosts() -> None:
    with pytest.raises(InvalidArgument):
        build_options({"platform": "linux/s390x"})
