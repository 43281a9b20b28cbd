#!/bin/bash
# berth's main job on a fresh Debian 12 machine, as root: install what the build needs, build
# berth, start its daemon (the Docker Engine API on /run/berth/berth.sock, data in
# /var/lib/berth), make a busybox image from Debian's busybox-static, and run containers in it
# with berth's CLI: a foreground run, then a detached one with logs, exec, ps and rm -f.
# The daemon keeps running afterwards (stop it with: kill $(cat /run/berth/berth.pid));
# the docker CLI works against it too: DOCKER_HOST=unix:///run/berth/berth.sock docker ps
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

need=()
for p in busybox-static libseccomp-dev pkg-config gcc nftables; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v cargo >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cargo; }

berth=$(bash scripts/build-release.sh)
ln -sf berth "$(dirname "$berth")/berth-runtime"
echo "built $berth"

# The daemon: started unless one already answers on the default socket.
if ! "$berth" version >/dev/null 2>&1; then
  mkdir -p /var/log
  setsid "$berth" daemon </dev/null >>/var/log/berth-daemon.log 2>&1 &
  for _ in $(seq 100); do "$berth" version >/dev/null 2>&1 && break; sleep 0.1; done
  "$berth" version >/dev/null || { echo "the daemon did not start; see /var/log/berth-daemon.log" >&2; exit 1; }
  echo "berth daemon started (pid $(cat /run/berth/berth.pid)); log in /var/log/berth-daemon.log"
fi

# The busybox image, from Debian's busybox-static.
work=$(mktemp -d /tmp/berth-quickstart.XXXXXX)
trap 'rm -rf "$work"' EXIT
bash "$repo/tests/make-busybox-rootfs.sh" "$work/rootfs" "$work/busybox.tar" >/dev/null
"$berth" import "$work/busybox.tar" busybox:latest >/dev/null
"$berth" images

set -x
"$berth" run --rm busybox echo "hello from a berth container"
"$berth" run --rm busybox sh -c 'echo "pid $$, hostname $(hostname), uid $(id -u)"'
"$berth" run -d --name quickstart busybox sh -c 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done'
sleep 1
"$berth" logs --tail 3 quickstart
"$berth" exec quickstart sh -c 'echo "exec in $(hostname): $(ps | wc -l) lines of ps"'
"$berth" ps
"$berth" rm -f quickstart
"$berth" ps -a
