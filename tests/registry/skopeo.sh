#!/bin/sh
# Interoperability with skopeo (containers/image, another implementation of the distribution
# protocol) through a real docker-registry on 127.0.0.1:
#   1. skopeo copies an OCI layout into the registry; `berth pull` gets it; the digests agree.
#   2. `berth push` sends it to an empty registry on the same address; `skopeo inspect` sees
#      the same manifest digest and layers, and skopeo can copy it back out.
# The OCI layout is berth's own (`berth import` of a busybox rootfs, `berth save
# --oci-layout`) when this berth has those commands, else tests/registry/make-oci-layout.sh's
# over the same rootfs plus a small layer. berth's commands are clients of private `berth
# daemon`s (one for the source layout, one for the pull and push), stopped at exit.
#
#   tests/registry/skopeo.sh [BERTH]    # default target/debug/berth (built if missing)
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

BERTH=${1:-${BERTH:-$repo/target/debug/berth}}
if [ ! -x "$BERTH" ]; then
    (cd "$repo" && cargo build -q -p berth)
fi

tmp=$(mktemp -d /tmp/berth-skopeo.XXXXXX)
cleanup() {
    stop_berth_daemon
    stop_registry
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$(free_port)
reg=127.0.0.1:$port
start_registry "$tmp/reg1" "$port"

# An OCI layout to start from.
start_berth_daemon "$BERTH" "$tmp/berth-src"
"$repo/tests/make-busybox-rootfs.sh" "$tmp/rootfs" "$tmp/rootfs.tar" >/dev/null
if "$BERTH" save --help 2>/dev/null | grep -q -- --oci-layout &&
    "$BERTH" import "$tmp/rootfs.tar" interop-src:1 >/dev/null &&
    "$BERTH" save --oci-layout "$tmp/oci" interop-src:1; then
    echo "OCI layout written by berth save --oci-layout"
else
    rm -rf "$tmp/oci"
    mkdir -p "$tmp/top/etc"
    echo "built for the skopeo interop test" > "$tmp/top/etc/motd"
    "$here/make-oci-layout.sh" "$tmp/oci" 1 "$tmp/rootfs" "$tmp/top" >/dev/null
    echo "OCI layout written by make-oci-layout.sh (this berth cannot export one)"
fi

echo "== skopeo copy oci: -> $reg/interop/x:1"
skopeo copy -q --dest-tls-verify=false "oci:$tmp/oci:1" "docker://$reg/interop/x:1"
want=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$reg/interop/x:1")

echo "== berth pull $reg/interop/x:1"
stop_berth_daemon
start_berth_daemon "$BERTH" "$tmp/berth"
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

echo "== berth tag + push to another repository of the same registry: mounted, not uploaded"
"$BERTH" tag "$reg/interop/x:1" "$reg/interop/copy:2"
"$BERTH" push "$reg/interop/copy:2" | tee "$tmp/push2.out"
grep -q "Mounted from interop/x" "$tmp/push2.out" || { echo "FAIL: no cross-repository mount" >&2; exit 1; }
copy=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$reg/interop/copy:2")
[ "$copy" = "$want" ] || { echo "FAIL: copy has $copy, expected $want" >&2; exit 1; }
echo "ok: mounted, skopeo sees $copy"
echo "PASS: skopeo interop"
