#!/bin/bash
# Runs tests/cli/cli.sh against a private berth daemon: berth's CLI and the docker CLI side
# by side on the same daemon, scenario by scenario. Everything lives under one temporary
# directory; the daemon and every container it ran are gone on exit, also on failure.
#
#   tests/cli/with-berth.sh /path/to/berth
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
berth=$(readlink -f "${1:-$root/target/debug/berth}")

if [ "$(id -u)" != 0 ]; then
    [ "${CI:-}" = true ] && { echo "FAIL: the berth daemon needs root" >&2; exit 1; }
    echo "SKIP: the berth daemon needs root"; exit 0
fi
command -v docker >/dev/null 2>&1 || { echo "FAIL: no docker CLI" >&2; exit 1; }

# short: shim sockets live under the exec root (sun_path is 108 bytes)
dir=$(mktemp -d /tmp/bC.XXXXXX)
sock=$dir/s.sock
pid=
. "$root/tests/support/netclean.sh"
stop() {
    if [ -n "$pid" ]; then
        for c in $(docker -H "unix://$sock" ps -aq 2>/dev/null); do
            docker -H "unix://$sock" rm -f "$c" >/dev/null 2>&1
        done
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    grep -o " $dir[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done
    berth_net_cleanup "$dir/data"
    rm -rf "$dir"
}
trap stop EXIT

sh "$root/tests/make-busybox-rootfs.sh" "$dir/busybox" "$dir/busybox.tar" >/dev/null || exit 1
"$berth" daemon -H "unix://$sock" --data-root "$dir/data" --exec-root "$dir/run" \
    --pidfile "$dir/pid" --config-file "$dir/none.json" </dev/null >"$dir/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    [ -S "$sock" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/daemon.log" >&2; echo "FAIL: berth daemon exited" >&2; exit 1; }
    sleep 0.1
done
[ -S "$sock" ] || { echo "FAIL: berth daemon did not listen" >&2; exit 1; }
"$berth" -H "unix://$sock" import "$dir/busybox.tar" berth-cli-busybox:latest >/dev/null || exit 1

BERTH=$berth "$here/cli.sh" "unix://$sock" berth-cli-busybox:latest
