#!/bin/sh
# The README's main job, from a fresh Debian machine: install Dockyard, make the
# Debian bookworm and bullseye base images from the Debian archive (no registry),
# build three PHP apps from their Dockerfiles (App1 and App3 on PHP 8.2, App2 on
# PHP 7.4), run them side by side on the default bridge, each publishing its
# port 80 on the host, and ask each one which PHP it runs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/../../install.sh"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$@"; "$@"; }

run dockyard bootstrap debian:bookworm      # the first command starts the daemon
run dockyard bootstrap debian:bullseye
run dockyard build -t shop/app1:1 "$here/app1"
run dockyard build -t shop/app2:1 --build-arg PHP=7.4 "$here/app2"
run dockyard build -t shop/app3:1 "$here/app3"
run dockyard images

dockyard rm -f app1 app2 app3 >/dev/null 2>&1 || true
port=8081
for app in app1 app2 app3; do
    run dockyard run -d --name "$app" -p "$port:80" "shop/$app:1"
    port=$((port + 1))
done
sleep 1
port=8081
for app in app1 app2 app3; do
    say "curl http://127.0.0.1:$port/"
    python3 - "$port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/"
for attempt in range(50):
    try:
        print(urllib.request.urlopen(url, timeout=2).read().decode(), end="")
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(f"{url} did not answer")
PY
    port=$((port + 1))
done
run dockyard ps
run dockyard rm -f app1 app2 app3
