#!/bin/bash
# Time `berth runtime run` against `runc run` of the same busybox bundle running /bin/true
# (hyperfine, warm caches, same machine), print the ratio, and the peak memory of each
# (/usr/bin/time -v). Root only. Installs hyperfine, runc and time if missing; builds berth
# in release mode.
#
#   bench/runtime.sh [RUNS]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${1:-50}

need=()
for p in hyperfine runc time busybox-static python3; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
(cd "$repo" && cargo build --release -p berth >&2)
berth=$repo/target/release/berth

work=$(mktemp -d /tmp/berth-bench-rt.XXXXXX)
cleanup() {
  runc --root "$work/runc" delete -f bench-runc >/dev/null 2>&1 || true
  "$berth" runtime --root "$work/berth" delete -f bench-berth >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
bash "$repo/tests/make-busybox-rootfs.sh" "$work/bundle/rootfs" >/dev/null
cd "$work/bundle"
"$berth" runtime spec
python3 - <<'PY'
import json
s = json.load(open("config.json"))
s["process"]["terminal"] = False
s["process"]["args"] = ["/bin/true"]
s["linux"]["cgroupsPath"] = "/berth-bench/c"
json.dump(s, open("config.json", "w"), indent=2)
PY

berth_cmd="$berth runtime --root $work/berth run --bundle $work/bundle bench-berth"
runc_cmd="runc --root $work/runc run --bundle $work/bundle bench-runc"
# both must work before they are timed
$berth_cmd
$runc_cmd

hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/hf.json" \
  -n "berth runtime run" "$berth_cmd" -n "runc run" "$runc_cmd"
python3 - "$work/hf.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, c = r["berth runtime run"], r["runc run"]
print(f"berth: {b['mean']*1000:.2f} ms ± {b['stddev']*1000:.2f}   runc: {c['mean']*1000:.2f} ms ± {c['stddev']*1000:.2f}")
print(f"ratio berth/runc: {b['mean']/c['mean']:.3f}  (goal: at most 0.333)")
PY
for name in berth runc; do
  cmd=$berth_cmd; [ $name = runc ] && cmd=$runc_cmd
  rss=$(/usr/bin/time -v $cmd 2>&1 >/dev/null | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
  echo "$name peak RSS of the runtime process: ${rss} KiB"
done
