#!/bin/bash
# Time `berth runtime run` against `runc run` of the same busybox bundle running /bin/true
# (hyperfine, warm caches, same machine), print the ratio, and the peak memory of each
# (/usr/bin/time -v). Root only. Installs hyperfine, runc and time if missing; builds berth
# in release mode (scripts/build-release.sh: static).
#
#   [ROUNDS=4] [PAIRS=200] bench/runtime.sh [RUNS-PER-ROUND]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${1:-30}

need=()
for p in hyperfine runc time busybox-static python3; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
berth=$(bash "$repo/scripts/build-release.sh")

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

# This machine's timings drift (other tenants, the kernel's own deferred work), so the two
# runtimes take turns: ROUNDS rounds of RUNS runs each, and every run of every round counts.
rounds=${ROUNDS:-4}
for r in $(seq "$rounds"); do
  hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/hf-$r.json" \
    -n "berth runtime run" "$berth_cmd" -n "runc run" "$runc_cmd" >/dev/null
done
python3 - "$work"/hf-*.json <<'PY'
import json, statistics, sys
times = {}
for f in sys.argv[1:]:
    for x in json.load(open(f))["results"]:
        times.setdefault(x["command"], []).extend(x["times"])
b, c = times["berth runtime run"], times["runc run"]
def show(name, t):
    print(f"{name:6} mean {statistics.mean(t)*1000:6.2f} ms  median {statistics.median(t)*1000:6.2f} ms"
          f"  stddev {statistics.stdev(t)*1000:5.2f}  min {min(t)*1000:6.2f}  ({len(t)} runs)")
show("berth", b)
show("runc", c)
print(f"ratio berth/runc: mean {statistics.mean(b)/statistics.mean(c):.3f}, "
      f"median {statistics.median(b)/statistics.median(c):.3f}  (goal: at most 0.333)")
PY
# And run by run, alternating (the two runtimes see the same moment of the machine), timed
# from Python: adds ~1 ms of spawning to both.
python3 - "${PAIRS:-200}" "$berth_cmd" "$runc_cmd" <<'PY'
import statistics, subprocess, sys, time
pairs, cmds = int(sys.argv[1]), [c.split() for c in sys.argv[2:]]
times = [[], []]
for _ in range(pairs):
    for t, c in zip(times, cmds):
        start = time.perf_counter()
        subprocess.run(c, check=True)
        t.append(time.perf_counter() - start)
(b, c) = times
print(f"alternating, {pairs} pairs: berth median {statistics.median(b)*1000:.2f} ms, "
      f"runc median {statistics.median(c)*1000:.2f} ms; ratio: mean "
      f"{statistics.mean(b)/statistics.mean(c):.3f}, median {statistics.median(b)/statistics.median(c):.3f}")
PY
for name in berth runc; do
  cmd=$berth_cmd; [ $name = runc ] && cmd=$runc_cmd
  rss=$(/usr/bin/time -v $cmd 2>&1 >/dev/null | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
  echo "$name peak RSS of the runtime process: ${rss} KiB"
done
