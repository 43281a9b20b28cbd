#!/bin/sh
# Interoperability with Docker's own registry client (Debian's docker.io), through a real
# docker-registry on 127.0.0.1 and a private dockerd (own data root, socket; no bridge, no
# iptables), so the machine's Docker, if any, is untouched:
#   1. `docker push` (Docker schema 2 media types) -> `berth pull`: same digest.
#   2. `berth push` to an empty registry on the same address -> `docker pull`: same digest.
# berth's commands are clients of a private `berth daemon`, started here and stopped at exit.
#
#   tests/registry/docker.sh [BERTH]    # default target/debug/berth (built if missing)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

"$here/setup.sh" >/dev/null 2>&1 || true
for tool in dockerd docker /usr/bin/docker-registry; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ "${CI:-}" = true ]; then
            echo "FAIL: $tool not installed" >&2
            exit 1
        fi
        echo "SKIP: $tool not installed"
        exit 0
    fi
done

BERTH=${1:-${BERTH:-$repo/target/debug/berth}}
if [ ! -x "$BERTH" ]; then
    (cd "$repo" && cargo build -q -p berth)
fi

tmp=$(mktemp -d /var/tmp/berth-docker.XXXXXX)
dockerd_pid=
cleanup() {
    stop_berth_daemon
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
    fi
    grep " $tmp/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    stop_registry
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$(free_port)
reg=127.0.0.1:$port
start_registry "$tmp/reg1" "$port"

mkdir -p "$tmp/docker" "$tmp/docker-exec"
dockerd --data-root "$tmp/docker" --exec-root "$tmp/docker-exec" -H "unix://$tmp/d.sock" \
    --pidfile "$tmp/docker.pid" --bridge none --iptables=false --ip6tables=false \
    --insecure-registry "$reg" >"$tmp/dockerd.log" 2>&1 &
dockerd_pid=$!
D="docker -H unix://$tmp/d.sock"
i=0
until $D version >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 300 ] || { tail -20 "$tmp/dockerd.log" >&2; exit 1; }
    sleep 0.1
done

"$repo/tests/make-busybox-rootfs.sh" "$tmp/rootfs" "$tmp/rootfs.tar" >/dev/null
$D import "$tmp/rootfs.tar" "$reg/dock/bb:1" >/dev/null

echo "== docker push $reg/dock/bb:1"
$D push "$reg/dock/bb:1" | tee "$tmp/dpush.out"
want=$(sed -n 's/^1: digest: \(sha256:[0-9a-f]*\) size: .*/\1/p' "$tmp/dpush.out")
[ -n "$want" ] || { echo "FAIL: no digest in docker push output" >&2; exit 1; }

echo "== berth pull $reg/dock/bb:1"
start_berth_daemon "$BERTH" "$tmp/berth"
"$BERTH" pull "$reg/dock/bb:1" | tee "$tmp/pull.out"
got=$(sed -n 's/^Digest: //p' "$tmp/pull.out")
[ "$got" = "$want" ] || { echo "FAIL: berth pulled $got, docker pushed $want" >&2; exit 1; }
echo "ok: digest $got (Docker schema 2)"

echo "== berth push to an empty registry on the same address, then docker pull"
stop_registry
start_registry "$tmp/reg2" "$port"
"$BERTH" push "$reg/dock/bb:1" | tee "$tmp/push.out"
$D rmi -f "$reg/dock/bb:1" >/dev/null
$D pull "$reg/dock/bb:1" | tee "$tmp/dpull.out"
back=$(sed -n 's/^Digest: //p' "$tmp/dpull.out")
[ "$back" = "$want" ] || { echo "FAIL: docker pulled $back, expected $want" >&2; exit 1; }
echo "ok: docker pulled $back"
echo "PASS: docker interop"
