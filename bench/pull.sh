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
# so the machine's own Docker, if any, is untouched; berth as a private `berth daemon` (its
# CLI is a client of the daemon, as docker's is), started the same way. hyperfine times both, with a --prepare
# that gives each run an empty store on a freshly made ext4 file system (a loop device):
# on a disk shared with busy builds, ext4's allocator slows creating files right after many
# were deleted (find_inode_bit -> recently_deleted), which made runs vary from 3 s to 13 s;
# a fresh file system is what "an empty store" means and treats both the same. Each daemon is
# restarted on its fresh file system before each of its runs (not timed). The ratio
# berth/docker is printed (goal: <= 0.40). Then one berth pull with RUST_LOG=debug shows
# where berth's time goes (download vs unpack), and one with the blobs already in the store
# shows the unpack alone.
#
#   bench/pull.sh                    # builds the release binary (scripts/build-release.sh)
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

BERTH=${BERTH:-$(bash "$repo/scripts/build-release.sh")}

tmp=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
cleanup() {
    [ -x "$tmp/dockerd-stop.sh" ] && "$tmp/dockerd-stop.sh"
    [ -x "$tmp/berthd-stop.sh" ] && "$tmp/berthd-stop.sh"
    stop_berth_daemon
    grep " $tmp/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
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
start_berth_daemon "$BERTH" "$tmp/seed"
"$BERTH" pull -q "$reg/seed/debian:1" >/dev/null
# Same registry, same blobs: a fresh store would mount them; push to a fresh registry instead
# so that berth really uploads (and the benchmarked manifest is the one berth pushed).
stop_registry
rm -rf "$tmp/registry"
start_registry "$tmp/registry" "$port"
"$BERTH" push "$reg/seed/debian:1" >/dev/null
image=$reg/seed/debian:1
stop_berth_daemon
unset BERTH_HOST
grep " $tmp/seed/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "$m"; done
rm -rf "$tmp/seed"

# 4. Fresh file systems: one for berth's data root, one for dockerd's (restarted on it).
truncate -s 3G "$tmp/berth.img" "$tmp/docker.img"
mkdir -p "$tmp/berthfs" "$tmp/dockerfs" "$tmp/docker-exec" "$tmp/berth-exec"
cat > "$tmp/freshfs.sh" <<SH
#!/bin/sh
# freshfs.sh IMG MNT: an empty ext4 file system on IMG mounted at MNT (inode tables written
# now, so no lazy initialisation runs in the background during a timed pull)
umount "\$2" 2>/dev/null || true
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "\$1"
mount -o loop "\$1" "\$2"
sync
SH
cat > "$tmp/dockerd-stop.sh" <<SH
#!/bin/sh
pid=\$(cat "$tmp/docker.pid" 2>/dev/null) || exit 0
kill "\$pid" 2>/dev/null || exit 0
while kill -0 "\$pid" 2>/dev/null; do sleep 0.05; done
grep " $tmp/dockerfs/\| $tmp/docker-exec/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "\$m"; done
rm -f "$tmp/docker.pid"
SH
cat > "$tmp/dockerd-fresh.sh" <<SH
#!/bin/sh
# a private dockerd on a fresh file system, ready to pull
"$tmp/dockerd-stop.sh"
"$tmp/freshfs.sh" "$tmp/docker.img" "$tmp/dockerfs"
setsid dockerd --data-root "$tmp/dockerfs" --exec-root "$tmp/docker-exec" -H "unix://$tmp/d.sock" \\
    --pidfile "$tmp/docker.pid" --bridge none --iptables=false --ip6tables=false \\
    --storage-driver overlay2 --insecure-registry "$reg" >>"$tmp/dockerd.log" 2>&1 < /dev/null &
i=0
until docker -H "unix://$tmp/d.sock" version >/dev/null 2>&1; do
    i=\$((i + 1))
    [ \$i -lt 300 ] || { tail -20 "$tmp/dockerd.log" >&2; exit 1; }
    sleep 0.1
done
SH
cat > "$tmp/berthd-stop.sh" <<SH
#!/bin/sh
pid=\$(cat "$tmp/berth.pid" 2>/dev/null) || exit 0
kill "\$pid" 2>/dev/null || exit 0
while kill -0 "\$pid" 2>/dev/null; do sleep 0.05; done
rm -f "$tmp/berth.pid"
SH
cat > "$tmp/berthd-start.sh" <<SH
#!/bin/sh
# a private berth daemon on the store in berthfs/root, ready to pull; BERTH_LOG its filter
setsid "$BERTH" daemon --data-root "$tmp/berthfs/root" --exec-root "$tmp/berth-exec" \\
    -H "unix://$tmp/b.sock" --pidfile "$tmp/berth.pid" --config-file "$tmp/none.json" \\
    -l "\${BERTH_LOG:-info}" >>"$tmp/berthd.log" 2>&1 < /dev/null &
i=0
until "$BERTH" -H "unix://$tmp/b.sock" version >/dev/null 2>&1; do
    i=\$((i + 1))
    [ \$i -lt 300 ] || { tail -20 "$tmp/berthd.log" >&2; exit 1; }
    sleep 0.1
done
SH
cat > "$tmp/berthd-fresh.sh" <<SH
#!/bin/sh
"$tmp/berthd-stop.sh"
"$tmp/freshfs.sh" "$tmp/berth.img" "$tmp/berthfs"
"$tmp/berthd-start.sh"
SH
chmod +x "$tmp/freshfs.sh" "$tmp/dockerd-stop.sh" "$tmp/dockerd-fresh.sh" "$tmp/berthd-stop.sh" \
    "$tmp/berthd-start.sh" "$tmp/berthd-fresh.sh"
B="$BERTH -H unix://$tmp/b.sock"
"$tmp/dockerd-fresh.sh"
D="docker -H unix://$tmp/d.sock"
driver=$($D info --format '{{.Driver}}')

# 5. Time both, each from an empty store.
echo "image $image: $(($size / 1000000)) MB compressed, $(($usize / 1000000)) MB unpacked, 4 layers; docker storage driver $driver" >&2
hyperfine --runs "$RUNS" --export-json "$tmp/hf.json" \
    --prepare "$tmp/berthd-fresh.sh" \
    "$B pull -q $image" \
    --prepare "$tmp/dockerd-fresh.sh" \
    "$D pull -q $image"
python3 - "$tmp/hf.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
b, d = r[0]["mean"], r[1]["mean"]
print(f"berth pull: {b:.3f} s ± {r[0]['stddev']:.3f}   docker pull: {d:.3f} s ± {r[1]['stddev']:.3f}")
print(f"ratio berth/docker: {b / d:.2f} (goal <= 0.40)")
PY

# 6. Where berth's time goes: one run with the debug breakdown (manifest, download, unpack),
# then the unpack alone: the same pull with every blob already in the store (nothing to
# download), snapshots and database removed.
BERTH_LOG=info,berth_registry=debug "$tmp/berthd-fresh.sh"
: >"$tmp/berthd.log"
echo "berth breakdown (the daemon's log with berth_registry=debug):"
$B pull -q "$image" >/dev/null
grep -E "manifest resolved|blob received|blob downloaded|layer unpacked|blobs downloaded|image registered|pull done" \
    "$tmp/berthd.log" | sed 's/\x1b\[[0-9;]*m//g; s/^[^ ]* *DEBUG berth_registry::pull: /  /'
"$tmp/berthd-stop.sh"
grep " $tmp/berthfs/root/\| $tmp/berth-exec/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "$m"; done
mv "$tmp/berthfs/root/content" "$tmp/berthfs/content"
rm -rf "$tmp/berthfs/root"; mkdir -p "$tmp/berthfs/root"
mv "$tmp/berthfs/content" "$tmp/berthfs/root/content"
sync; sleep 31 # let ext4 forget the files just deleted (see above)
"$tmp/berthd-start.sh"
start=$(date +%s.%N)
$B pull -q "$image" >/dev/null
end=$(date +%s.%N)
echo "berth pull with all blobs present (unpack + register only): $(python3 -c "print(round($end - $start, 2))") s"
