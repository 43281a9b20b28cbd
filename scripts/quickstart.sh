#!/bin/bash
# berth's main job on a fresh Debian 12 machine, as root: install what the build needs, build
# berth, make a busybox root filesystem from Debian's busybox-static, run a container in it
# with berth's OCI runtime and print from inside, then import the same rootfs as an image and
# list it. (The daemon and `berth run` come with the engine; this grows with it.)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

need=()
for p in busybox-static libseccomp-dev pkg-config gcc; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v cargo >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cargo; }

berth=$(bash scripts/build-release.sh)
ln -sf berth "$(dirname "$berth")/berth-runtime"

work=$(mktemp -d /tmp/berth-quickstart.XXXXXX)
trap 'rm -rf "$work"' EXIT
bash "$repo/tests/make-busybox-rootfs.sh" "$work/bundle/rootfs" "$work/busybox.tar" >/dev/null
cd "$work/bundle"
"$berth" runtime spec
# no terminal, and a command that shows it is isolated
sed -z -i -e 's/"terminal": true/"terminal": false/' \
  -e 's/"args": \[[^]]*\]/"args": ["sh", "-c", "echo hello from inside berth: pid $$, hostname $(hostname), uid $(id -u)"]/' config.json
"$berth" runtime --root "$work/state" run "quickstart-$$"

export BERTH_DATA_ROOT=$work/data
"$berth" import "$work/busybox.tar" busybox:quickstart >/dev/null
"$berth" images
