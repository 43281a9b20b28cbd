#!/bin/sh
# Interoperability with skopeo (containers/image, another implementation of the distribution
# protocol) through a real docker-registry on 127.0.0.1:
#   1. skopeo copies an OCI layout into the registry; `berth pull` gets it; the digests agree.
#   2. `berth push` sends it to an empty registry on the same address; `skopeo inspect` sees
#      the same manifest digest and layers, and skopeo can copy it back out.
# The OCI layout comes from `berth save` when berth can write one, else from
# tests/registry/make-oci-layout.sh over a busybox rootfs plus a small layer.
#
#   tests/registry/skopeo.sh            # uses target/debug/berth (built if missing)
#   BERTH=/path/to/berth tests/registry/skopeo.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

WITH_SKOPEO=1 "$here/setup.sh" >/dev/null 2>&1 || true
for tool in skopeo /usr/bin/docker-registry; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ "${CI:-}" = true ]; then
            echo "FAIL: $tool not installed" >&2
            exit 1
        fi
        echo "SKIP: $tool not installed"
        exit 0
    fi
done

BERTH=${BERTH:-$repo/target/debug/berth}
if [ ! -x "$BERTH" ]; then
    (cd "$repo" && cargo build -q -p berth)
fi

tmp=$(mktemp -d /tmp/berth-skopeo.XXXXXX)
cleanup() {
    stop_registry
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$(free_port)
reg=127.0.0.1:$port
start_registry "$tmp/reg1" "$port"

# An OCI layout to start from.
"$repo/tests/make-busybox-rootfs.sh" "$tmp/rootfs" >/dev/null
mkdir -p "$tmp/top/etc"
echo "built for the skopeo interop test" > "$tmp/top/etc/motd"
"$here/make-oci-layout.sh" "$tmp/oci" 1 "$tmp/rootfs" "$tmp/top" >/dev/null

echo "== skopeo copy oci: -> $reg/interop/x:1"
skopeo copy -q --dest-tls-verify=false "oci:$tmp/oci:1" "docker://$reg/interop/x:1"
want=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$reg/interop/x:1")

echo "== berth pull $reg/interop/x:1"
export BERTH_DATA_ROOT="$tmp/berth"
"$BERTH" pull "$reg/interop/x:1" | tee "$tmp/pull.out"
got=$(sed -n 's/^Digest: //p' "$tmp/pull.out")
[ "$got" = "$want" ] || { echo "FAIL: berth pulled $got, skopeo pushed $want" >&2; exit 1; }
echo "ok: digest $got"

echo "== berth push to an empty registry on the same address"
stop_registry
start_registry "$tmp/reg2" "$port"
"$BERTH" push "$reg/interop/x:1" | tee "$tmp/push.out"
grep -q "^1: digest: $want size: " "$tmp/push.out" || { echo "FAIL: push did not report $want" >&2; exit 1; }
inspected=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$reg/interop/x:1")
[ "$inspected" = "$want" ] || { echo "FAIL: skopeo inspect says $inspected, expected $want" >&2; exit 1; }
skopeo inspect --tls-verify=false "docker://$reg/interop/x:1" | grep -q '"Layers"'
skopeo copy -q --src-tls-verify=false "docker://$reg/interop/x:1" "oci:$tmp/back:1"
back=$(skopeo inspect --format '{{.Digest}}' "oci:$tmp/back:1")
[ "$back" = "$want" ] || { echo "FAIL: copied back $back, expected $want" >&2; exit 1; }
echo "ok: skopeo sees $inspected"
echo "PASS: skopeo interop"
