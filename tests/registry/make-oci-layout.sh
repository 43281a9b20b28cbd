#!/bin/sh
# make-oci-layout.sh OUT NAME DIR... — writes an OCI image layout at OUT holding one image
# (tagged NAME in index.json) with one tar+gzip layer per DIR, bottom first. For tests and
# benchmarks that need an image before berth can build one; plain shell tools only.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 OUT NAME DIR..." >&2; exit 2; }
out=$1; name=$2; shift 2
mkdir -p "$out/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
gz="gzip -n -6 -c"
command -v pigz >/dev/null 2>&1 && gz="pigz -n -6 -c"

put() { # put FILE -> prints "digest size", moves FILE into blobs
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    mv "$1" "$out/blobs/sha256/$d"
    echo "$d $s"
}

layers=""; diffs=""
for dir in "$@"; do
    tmp="$out/.layer.$$"
    tar --numeric-owner --sort=name --xattrs -C "$dir" -cf "$tmp.tar" .
    diff=$(sha256sum "$tmp.tar" | cut -d' ' -f1)
    $gz "$tmp.tar" > "$tmp.gz"
    rm -f "$tmp.tar"
    r=$(put "$tmp.gz"); d=${r% *}; s=${r#* }
    layers="$layers${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$s}"
    diffs="$diffs${diffs:+,}\"sha256:$diff\""
done

printf '{"architecture":"amd64","os":"linux","created":"2026-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[]}' \
    "$diffs" > "$out/.config"
r=$(put "$out/.config"); d=${r% *}; s=${r#* }
config="{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$d\",\"size\":$s}"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
    "$config" "$layers" > "$out/.manifest"
r=$(put "$out/.manifest"); d=${r% *}; s=${r#* }
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"},"platform":{"architecture":"amd64","os":"linux"}}]}' \
    "$d" "$s" "$name" > "$out/index.json"
echo "sha256:$d"
