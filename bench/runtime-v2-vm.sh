#!/bin/bash
# The runtime benchmark on a pure cgroup v2 kernel: `berth runtime run` against `runc run` of
# the same busybox bundle running /bin/true, inside the cgroup2 VM (../shared/tools/cgroup2-vm,
# software-emulated: absolute times are slow, the ratio is what to read). On v2, berth's init
# is born in its cgroup (clone3 CLONE_INTO_CGROUP) instead of being moved into it, which on
# this hybrid host costs an RCU grace period for both runtimes.
#
#   bench/runtime-v2-vm.sh [RUNS]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${1:-20}

if [ "${1:-}" = "--in-vm" ]; then
  runs=$2 berth=$3 bundle=$4
  work=$(mktemp -d /tmp/rt-vm.XXXXXX)
  berth_cmd="$berth runtime --root $work/berth run --bundle $bundle bench-berth"
  runc_cmd="runc --root $work/runc run --bundle $bundle bench-runc"
  $berth_cmd && $runc_cmd
  hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/hf.json" \
    -n "berth runtime run" "$berth_cmd" -n "runc run" "$runc_cmd"
  python3 - "$work/hf.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, c = r["berth runtime run"], r["runc run"]
print(f"cgroup v2 VM: berth {b['mean']*1000:.1f} ms ± {b['stddev']*1000:.1f}, runc {c['mean']*1000:.1f} ms ± {c['stddev']*1000:.1f}, ratio {b['mean']/c['mean']:.3f}")
PY
  exit 0
fi

for p in hyperfine runc python3; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
berth=$(bash "$repo/scripts/build-release.sh")
# the bundle must be visible in the VM, which sees this machine's files read-only but has
# its own /tmp and /var: keep it under target/
bundle=$repo/target/bench-v2-bundle
rm -rf "$bundle"
bash "$repo/tests/make-busybox-rootfs.sh" "$bundle/rootfs" >/dev/null
(cd "$bundle" && "$berth" runtime spec)
python3 - "$bundle/config.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["process"]["terminal"] = False
s["process"]["args"] = ["/bin/true"]
s["linux"]["cgroupsPath"] = "/berth-bench/c"
json.dump(s, open(sys.argv[1], "w"), indent=2)
PY
shared=${BERTH_SHARED:-$(dirname "$repo")/shared}
"$shared/tools/cgroup2-vm" -- bash "$repo/bench/runtime-v2-vm.sh" --in-vm "$runs" "$berth" "$bundle" 2>&1 | cat
rm -rf "$bundle"
