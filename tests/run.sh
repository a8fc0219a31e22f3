#!/bin/sh
# Install everything the tests need, then run the whole suite (unit and integration).
set -eu
cd "$(dirname "$0")/.."
./install.sh --tests
.venv/bin/ruff check dockyard tests bench plugins
.venv/bin/mypy
exec .venv/bin/pytest -q "$@"
