#!/bin/sh
# The README's first command: install Dockyard on a fresh Debian machine, make an
# image without any registry, and run containers with limits side by side.
set -eu
cd "$(dirname "$0")/.."
./install.sh
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

tar=$(mktemp --suffix=.tar)
trap 'rm -f "$tar"' EXIT
examples/busybox/make-rootfs.sh "$tar"

say dockyard import "$tar" demo/busybox:1      # the first command starts the daemon
dockyard import "$tar" demo/busybox:1
say dockyard run --rm demo/busybox:1 echo hello
dockyard run --rm demo/busybox:1 echo hello
dockyard rm -f web worker >/dev/null 2>&1 || true
say dockyard run -d --name web --memory 64m --cpus 0.5 --pids-limit 50 demo/busybox:1 ...
dockyard run -d --name web --memory 64m --cpus 0.5 --pids-limit 50 demo/busybox:1 \
    sh -c 'while :; do date; sleep 1; done'
say dockyard run -d --name worker --restart on-failure:3 --read-only demo/busybox:1 ...
dockyard run -d --name worker --restart on-failure:3 --read-only demo/busybox:1 \
    sh -c 'echo "worker $(hostname) starting"; sleep 3600'
sleep 2
say dockyard ps
dockyard ps
say dockyard logs --tail 2 web
dockyard logs --tail 2 web
say dockyard exec web cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max
dockyard exec web sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'
say dockyard top web
dockyard top web
say dockyard stop -t 2 web worker
dockyard stop -t 2 web worker
say dockyard rm web worker
dockyard rm web worker
say dockyard info
dockyard info | sed -n '1,12p'
