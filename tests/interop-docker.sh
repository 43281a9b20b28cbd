#!/bin/sh
# Interoperability of berth's image archives with Debian's docker.io (needs root):
#  1. berth import a busybox rootfs, `berth save` it, `docker load` it, `docker run --rm` a
#     command in it: the output must equal the same command run (chroot) in berth's own
#     mount of the image.
#  2. docker makes a two-layer image (import + a build step that deletes a file), `docker save`
#     (docker 20.10's legacy format), `berth load`: same image ID; berth's mount of it gives
#     the same command output as `docker run`, and the deleted file is gone.
#  3. berth save of what it loaded, `docker load` again: still the same image ID.
# A private dockerd and a private berth daemon are started, each with its own data root,
# exec root and socket, and stopped (with everything they made) at exit; berth's commands are
# clients of its daemon (`image mount`, a debugging aid, works on its data root directly).
#
#   tests/interop-docker.sh [path/to/berth]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/support/netclean.sh"
berth=${1:-$here/../target/debug/berth}
[ -x "$berth" ] || { echo "FAIL: berth binary $berth not found (cargo build -p berth)" >&2; exit 1; }
berth=$(cd "$(dirname "$berth")" && pwd)/$(basename "$berth")

skip() {
    if [ "${CI:-}" = true ]; then echo "FAIL: $1 (required under CI)" >&2; exit 1; fi
    echo "SKIP: interop-docker: $1"; exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root"
if ! command -v dockerd >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null 2>&1 || skip "docker.io not installable"
fi
# Debian's client matches its daemon; another docker on PATH may be newer than the daemon
docker=/usr/bin/docker
[ -x "$docker" ] || docker=$(command -v docker)

tmp=$(mktemp -d /tmp/berth-interop.XXXXXX)
sock=$tmp/docker.sock
bdata=$tmp/berth
bsock=$tmp/berth.sock
dpid=
bpid=
# berth's commands, as clients of the private berth daemon
b() { BERTH_HOST="unix://$bsock" "$berth" "$@"; }
cleanup() {
    set +e
    if [ -n "$bpid" ]; then
        kill "$bpid" 2>/dev/null
        wait "$bpid" 2>/dev/null
    fi
    if [ -n "$dpid" ]; then
        kill "$dpid" 2>/dev/null
        i=0; while kill -0 "$dpid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        kill -9 "$dpid" 2>/dev/null
    fi
    # whatever dockerd left mounted under its roots
    grep -o " $tmp/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
    berth_net_cleanup "$bdata"
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

mkdir -p "$tmp/docker" "$tmp/exec"
dockerd --data-root "$tmp/docker" --exec-root "$tmp/exec" --host "unix://$sock" \
    --pidfile "$tmp/docker.pid" --bridge none --iptables=false --ip6tables=false \
    --storage-driver overlay2 >"$tmp/dockerd.log" 2>&1 &
dpid=$!
d() { "$docker" -H "unix://$sock" "$@"; }
i=0
until d version >/dev/null 2>&1; do
    i=$((i+1))
    if [ $i -gt 150 ] || ! kill -0 "$dpid" 2>/dev/null; then
        tail -20 "$tmp/dockerd.log" >&2
        skip "private dockerd did not start"
    fi
    sleep 0.2
done
echo "dockerd $(d version -f '{{.Server.Version}}') up"

env -u BERTH_HOST -u BERTH_DATA_ROOT "$berth" daemon -H "unix://$bsock" --data-root "$bdata" \
    --exec-root "$tmp/berth-run" --pidfile "$tmp/berth.pid" >"$tmp/berthd.log" 2>&1 &
bpid=$!
i=0
until b version >/dev/null 2>&1; do
    i=$((i+1))
    if [ $i -gt 150 ] || ! kill -0 "$bpid" 2>/dev/null; then
        tail -20 "$tmp/berthd.log" >&2
        echo "FAIL: the private berth daemon did not start" >&2
        exit 1
    fi
    sleep 0.1
done
echo "berth daemon up"

# (not /etc as a whole: docker bind-mounts hostname, hosts and resolv.conf there)
cmd='echo hello from busybox; ls /bin | wc -l; cat /etc/passwd; ls -ln /bin/busybox /bin/sh /etc/group /etc/passwd; stat -c "%a %u %g %n" /tmp /root /var/tmp; test -e /bin/vi && echo vi present || echo vi gone'

# the command's output in a container of the image, run by the berth daemon
in_berth() {
    b run --rm --network none "$1" /bin/sh -c "$2"
}

"$here/make-busybox-rootfs.sh" "$tmp/rootfs" "$tmp/rootfs.tar"

echo "== 1. berth save -> docker load -> docker run"
id=$(b import -c 'CMD ["/bin/sh"]' "$tmp/rootfs.tar" berth-busybox:latest)
b save -o "$tmp/berth.tar" berth-busybox:latest
d load -i "$tmp/berth.tar"
did=$(d image inspect -f '{{.Id}}' berth-busybox:latest)
[ "$did" = "$id" ] || { echo "FAIL: docker sees image ID $did, berth made $id" >&2; exit 1; }
d run --rm --network none berth-busybox:latest /bin/sh -c "$cmd" >"$tmp/docker-run.out"
in_berth berth-busybox:latest "$cmd" >"$tmp/berth-run.out"
diff -u "$tmp/berth-run.out" "$tmp/docker-run.out"
echo "ok: same ID ($id) and same output"

echo "== 2. docker save (two layers, a whiteout) -> berth load"
d import "$tmp/rootfs.tar" dk-base:latest >/dev/null
mkdir -p "$tmp/ctx"
printf 'FROM dk-base:latest\nRUN rm /bin/vi && mkdir -p /data && echo layered > /data/file\nCMD ["/bin/sh"]\n' >"$tmp/ctx/Dockerfile"
DOCKER_BUILDKIT=0 d build -q -t dk-busybox:latest "$tmp/ctx" >/dev/null
did=$(d image inspect -f '{{.Id}}' dk-busybox:latest)
d save -o "$tmp/docker.tar" dk-busybox:latest
b load -i "$tmp/docker.tar"
bid=$(b images --no-trunc -q dk-busybox:latest)
[ "$bid" = "$did" ] || { echo "FAIL: berth loaded image ID $bid, docker has $did" >&2; exit 1; }
d run --rm --network none dk-busybox:latest /bin/sh -c "$cmd; cat /data/file" >"$tmp/docker-run2.out"
cmd2="$cmd; cat /data/file"
in_berth dk-busybox:latest "$cmd2" >"$tmp/berth-run2.out"
diff -u "$tmp/berth-run2.out" "$tmp/docker-run2.out"
grep -q "vi gone" "$tmp/berth-run2.out"
echo "ok: same ID ($did), same output, whiteout applied"
# the same listing, byte for byte, in Docker's table layout
fmt='table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}'
d images --filter reference='dk-busybox' --format "$fmt" >"$tmp/docker-images.out"
b images --filter reference='dk-busybox' --format "$fmt" >"$tmp/berth-images.out"
diff -u "$tmp/docker-images.out" "$tmp/berth-images.out"
d history -q dk-busybox:latest | head -1 >"$tmp/docker-history.out"
b history -q dk-busybox:latest | head -1 >"$tmp/berth-history.out"
diff -u "$tmp/docker-history.out" "$tmp/berth-history.out"
echo "ok: images table and history ID as docker prints them"

echo "== 3. berth save of the docker image -> docker load"
d rmi -f dk-busybox:latest >/dev/null
b save -o "$tmp/again.tar" dk-busybox:latest
d load -i "$tmp/again.tar"
did2=$(d image inspect -f '{{.Id}}' dk-busybox:latest)
[ "$did2" = "$did" ] || { echo "FAIL: round trip changed the ID: $did -> $did2" >&2; exit 1; }
d run --rm --network none dk-busybox:latest /bin/sh -c "$cmd2" >"$tmp/docker-run3.out"
diff -u "$tmp/docker-run2.out" "$tmp/docker-run3.out"
echo "ok: docker -> berth -> docker keeps ID $did"
echo "PASS: interop-docker"
