#!/bin/bash
# Runs tests/cli/cli.sh against a private dockerd (Debian's docker.io) with a busybox image
# made from Debian's busybox-static: the reference that berth's CLI must match, until the
# berth daemon can stand in for it. Everything it makes lives under one temporary directory
# and the dockerd it started is stopped on exit, also on failure.
#
#   tests/cli/with-dockerd.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

skip() {
    if [ "${CI:-}" = true ]; then
        echo "FAIL: $1" >&2
        exit 1
    fi
    echo "SKIP: $1"
    exit 0
}
[ "$(id -u)" = 0 ] || skip "dockerd needs root"
command -v dockerd >/dev/null 2>&1 || skip "no dockerd (apt-get install docker.io)"
command -v docker >/dev/null 2>&1 || skip "no docker CLI"

dir=$(mktemp -d /tmp/berth-cli-dockerd.XXXXXX)
sock=$dir/docker.sock
pid=
stop() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    # dockerd leaves its exec root's mounts (netns, overlay) behind only when killed hard
    grep -o " $dir[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$dir"
}
trap stop EXIT

dockerd --data-root "$dir/root" --exec-root "$dir/exec" --pidfile "$dir/pid" \
    -H "unix://$sock" --bridge=none --iptables=false --ip6tables=false \
    >"$dir/dockerd.log" 2>&1 &
pid=$!
# dockerd creates its socket once it serves; wait for that (or for it to die)
for _ in $(seq 1 300); do
    docker -H "unix://$sock" version >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/dockerd.log" >&2; echo "FAIL: dockerd exited" >&2; exit 1; }
    sleep 0.1
done
docker -H "unix://$sock" version >/dev/null 2>&1 || { echo "FAIL: dockerd did not answer" >&2; exit 1; }

sh "$root/tests/make-busybox-rootfs.sh" "$dir/busybox" "$dir/busybox.tar" >/dev/null || exit 1
docker -H "unix://$sock" import "$dir/busybox.tar" berth-cli-busybox:latest >/dev/null || exit 1

"$here/cli.sh" "unix://$sock" berth-cli-busybox:latest
