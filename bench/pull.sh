#!/bin/sh
# bench/pull.sh — `berth pull` vs `docker pull` of the same ~250 MB multi-layer image from the
# same local registry (Debian's docker-registry on 127.0.0.1), each into an empty store.
#
# The image: a Debian bookworm rootfs (debootstrap --variant=minbase, from the mirror in
# /etc/apt/sources.list*) as the base layer, plus three small layers on top. It is put in the
# registry by skopeo (seed), pulled into a berth store and pushed back by `berth push` to the
# repository that is benchmarked, so the pushed manifest is berth's.
#
# Docker runs as a private dockerd (own data root, exec root, socket; no bridge, no iptables)
# so the machine's own Docker, if any, is untouched. hyperfine times both, with a --prepare
# that empties the store before every run; the ratio berth/docker is printed (goal: <= 0.40).
# Then one berth pull with RUST_LOG=debug shows where berth's time goes.
#
#   bench/pull.sh                    # builds target/release/berth if missing
#   BERTH=/path/to/berth RUNS=10 bench/pull.sh
#   KEEP_ROOTFS=1 bench/pull.sh      # keep the debootstrap rootfs in /var/tmp for next time
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$repo/tests/registry/lib.sh"
RUNS=${RUNS:-5}

need=""
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
command -v dockerd >/dev/null 2>&1 || need="$need docker.io"
command -v hyperfine >/dev/null 2>&1 || need="$need hyperfine"
command -v skopeo >/dev/null 2>&1 || need="$need skopeo"
command -v pigz >/dev/null 2>&1 || need="$need pigz"
[ -x /usr/bin/docker-registry ] || need="$need docker-registry"
if [ -n "$need" ]; then
    echo "installing:$need" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $need >&2
fi

BERTH=${BERTH:-$repo/target/release/berth}
if [ ! -x "$BERTH" ]; then
    (cd "$repo" && cargo build --release -p berth)
fi

tmp=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
dockerd_pid=
cleanup() {
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
        # dockerd leaves its overlay mounts behind if killed mid-pull
        grep " $tmp/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    fi
    stop_registry
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# 1. The base rootfs.
rootfs_cache=/var/tmp/berth-bench-rootfs
if [ -d "$rootfs_cache/usr" ]; then
    rootfs=$rootfs_cache
else
    mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
    [ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(http[^ ]*\) bookworm .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    rootfs=$tmp/rootfs
    [ "${KEEP_ROOTFS:-0}" = 1 ] && rootfs=$rootfs_cache
    echo "debootstrap --variant=minbase bookworm from $mirror" >&2
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
        { tail -20 "$tmp/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb
fi

# 2. Three small layers on top: an app directory, a config change, many small files.
mkdir -p "$tmp/l2/opt/app" "$tmp/l3/etc" "$tmp/l4/usr/share/bench"
head -c 30000000 /dev/urandom > "$tmp/l2/opt/app/payload.bin"
echo "bench=1" > "$tmp/l3/etc/bench.conf"
i=0
while [ $i -lt 500 ]; do
    echo "file $i of the small-files layer" > "$tmp/l4/usr/share/bench/f$i.txt"
    i=$((i + 1))
done
"$repo/tests/registry/make-oci-layout.sh" "$tmp/oci" 1 "$rootfs" "$tmp/l2" "$tmp/l3" "$tmp/l4" >/dev/null
size=$(du -sb "$tmp/oci/blobs" | cut -f1)
usize=$(du -sb "$rootfs" "$tmp/l2" "$tmp/l3" "$tmp/l4" | awk '{s+=$1} END {print s}')

# 3. Registry; seed with skopeo, then berth pull + berth push to the benchmarked repository.
port=$(free_port)
reg=127.0.0.1:$port
start_registry "$tmp/registry" "$port"
skopeo copy -q --dest-tls-verify=false "oci:$tmp/oci:1" "docker://$reg/seed/debian:1"
"$BERTH" --data-root "$tmp/seedroot" pull -q "$reg/seed/debian:1" >/dev/null
# Same registry, same blobs: a fresh store would mount them; push to a fresh registry instead
# so that berth really uploads (and the benchmarked manifest is the one berth pushed).
stop_registry
rm -rf "$tmp/registry"
start_registry "$tmp/registry" "$port"
"$BERTH" --data-root "$tmp/seedroot" push "$reg/seed/debian:1" >/dev/null
image=$reg/seed/debian:1
rm -rf "$tmp/seedroot"

# 4. A private dockerd.
mkdir -p "$tmp/docker" "$tmp/docker-exec"
dockerd --data-root "$tmp/docker" --exec-root "$tmp/docker-exec" -H "unix://$tmp/d.sock" \
    --pidfile "$tmp/docker.pid" --bridge none --iptables=false --ip6tables=false \
    --insecure-registry "$reg" >"$tmp/dockerd.log" 2>&1 &
dockerd_pid=$!
i=0
until docker -H "unix://$tmp/d.sock" version >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 300 ] || { tail -20 "$tmp/dockerd.log" >&2; exit 1; }
    sleep 0.1
done
D="docker -H unix://$tmp/d.sock"
driver=$($D info --format '{{.Driver}}')

# 5. Time both, each from an empty store.
echo "image $image: $(($size / 1000000)) MB compressed, $(($usize / 1000000)) MB unpacked, 4 layers; docker storage driver $driver" >&2
hyperfine --runs "$RUNS" --export-json "$tmp/hf.json" \
    --prepare "rm -rf $tmp/berthroot; sync" \
    "$BERTH --data-root $tmp/berthroot pull -q $image" \
    --prepare "$D rmi -f $image >/dev/null 2>&1; $D image prune -af >/dev/null 2>&1; sync" \
    "$D pull -q $image"
python3 - "$tmp/hf.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
b, d = r[0]["mean"], r[1]["mean"]
print(f"berth pull: {b:.3f} s ± {r[0]['stddev']:.3f}   docker pull: {d:.3f} s ± {r[1]['stddev']:.3f}")
print(f"ratio berth/docker: {b / d:.2f} (goal <= 0.40)")
PY

# 6. Where berth's time goes: one run with the debug breakdown (manifest, download, unpack).
rm -rf "$tmp/berthroot"; sync
RUST_LOG=berth_registry=debug "$BERTH" --data-root "$tmp/berthroot" pull -q "$image" 2>&1 >/dev/null |
    grep -E "manifest resolved|blob downloaded|blobs downloaded|image registered|pull done" |
    sed 's/\x1b\[[0-9;]*m//g'
