#!/bin/sh
# Install Dockyard and what it runs on, on Debian (root). Safe to run again.
#   ./install.sh          the engine: OCI runtimes, monitor, init, mmdebstrap, Python package
#   ./install.sh --tests  also what the test suite needs
set -eu
cd "$(dirname "$0")"

packages="crun runc conmon tini busybox-static procps iproute2 nftables python3 python3-venv python3-pip mmdebstrap debian-archive-keyring"
if [ "${1:-}" = "--tests" ]; then
    packages="$packages curl docker-registry skopeo openssl e2fsprogs gcc libc6-dev"
fi
missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
extra=""
[ "${1:-}" = "--tests" ] && extra="[test]"
.venv/bin/pip install -q --disable-pip-version-check ".$extra"
ln -sf "$PWD/.venv/bin/dockyard" /usr/local/bin/dockyard
