"""The Engine-API fuzz at a larger size, for finding what the suite's short run misses.

Usage (root): .venv/bin/python bench/fuzz.py [--examples 200] [--only TEXT] [--trace FILE]

Not part of the test suite. The same requests and rules as
`tests/fuzz/test_engine_api_fuzz.py` (see `tests/fuzz/engine_api.py`): every operation
of Docker's OpenAPI document for API 1.45, against one private daemon, `--examples`
generated requests each (`--only` keeps the operations whose "METHOD /path" contains
TEXT). A broken rule does not stop the run: the operation's first failure, shrunk to a
small request, is printed and the next operation goes on. At the end: the requests
sent, how many got each status, and the failures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.fuzz.engine_api import IMAGE, Target, fuzz, operations  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=200, help="requests per operation")
    parser.add_argument("--only", default="", help="operations whose label contains this")
    parser.add_argument("--trace", type=Path, help="append every request to this file")
    args = engines.parse_as_root(parser)

    daemon = Daemon(new_base())
    daemon.config["plugin-retry-timeout"] = 1
    failures: list[tuple[str, str]] = []
    try:
        daemon.start()
        tar = build_busybox_rootfs(daemon.base)
        daemon.cli("import", str(tar), IMAGE, check=True)
        target = Target(daemon, tar, trace=args.trace)
        target.ensure()
        chosen = [op for op in operations() if args.only in f"{op.method.upper()} {op.path}"]
        started = time.monotonic()
        for operation in chosen:
            what = f"{operation.method.upper()} {operation.path}"
            before = target.sent
            try:
                fuzz(target, operation, args.examples, shrink=True)
            except Exception as e:  # every failure is reported; the run goes on
                failures.append((what, str(e).splitlines()[0] if str(e) else repr(e)))
                print(f"FAIL {what}\n{e}\n", flush=True)
            else:
                print(f"ok   {what} ({target.sent - before} requests)", flush=True)
        elapsed = time.monotonic() - started
        print(f"\n{target.sent} requests to {len(chosen)} operations in {elapsed:.0f} s")
        print("statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(target.statuses.items())))
        print(f"{len(failures)} operation(s) failed" + (":" if failures else ""))
        for what, first in failures:
            print(f"  {what}: {first}")
    finally:
        daemon.cleanup()
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
