#!/bin/bash
# Two builds of berth side by side, run by run in turn: what a change bought. This VM's speed
# drifts by 20-30% within an hour (the docker CLI's own `version` took 13.5 ms at one hour
# and 17.7 ms the next), so figures taken at different times do not compare; these are taken
# at the same moments. Each build gets its own daemon (data root on disk, exec root on the
# same tmpfs, as in bench/run.sh) and the same busybox image; `--network none` as run.sh.
#   1. RUNS x `berth run --rm --network none busybox true`, each build's CLI against its own
#      daemon, alternating run by run;
#   2. RUNS x the daemons alone (bench/api_client.py: create + wait + start, alternating).
#
#   bench/ab.sh OLD-BERTH NEW-BERTH [RUNS]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
old=${1:?usage: bench/ab.sh OLD-BERTH NEW-BERTH [RUNS]}
new=${2:?usage: bench/ab.sh OLD-BERTH NEW-BERTH [RUNS]}
runs=${3:-40}

bench_install
bench_init
new_pid=
ab_cleanup() {
  local ids
  if [ -n "$new_pid" ]; then
    ids=$("$new" -H "unix://$work/new.sock" ps -aq 2>/dev/null)
    [ -n "$ids" ] && "$new" -H "unix://$work/new.sock" rm -f $ids >/dev/null 2>&1
    stop_pid "$new_pid"
    berth_net_cleanup "$work/new"
  fi
  bench_cleanup
}
trap ab_cleanup EXIT
BERTH=$old start_berth
"$new" daemon -H "unix://$work/new.sock" --data-root "$work/new" --exec-root "$run/n" \
  --pidfile "$work/new.pid" --config-file "$work/no-daemon.json" >"$work/new.log" 2>&1 &
new_pid=$!
wait_api "$work/new.sock" "$new_pid" "$work/new.log" "berth (new)"
"$new" -H "unix://$work/new.sock" import "$work/busybox.tar" busybox:latest >/dev/null
echo "$(bench_context)"
echo "old: $old ($(stat -c %y "$old" | cut -d. -f1)); new: $new ($(stat -c %y "$new" | cut -d. -f1))"

python3 - "$runs" "$old" "$work/berth.sock" "$new" "$work/new.sock" <<'PY'
import statistics, subprocess, sys, time
runs = int(sys.argv[1])
cmds = {
    "old": [sys.argv[2], "-H", "unix://" + sys.argv[3], "run", "--rm", "--network", "none", "busybox", "true"],
    "new": [sys.argv[4], "-H", "unix://" + sys.argv[5], "run", "--rm", "--network", "none", "busybox", "true"],
}
for c in cmds.values():  # warm up
    subprocess.run(c, check=True)
times = {k: [] for k in cmds}
for _ in range(runs):
    for k, c in cmds.items():
        t0 = time.perf_counter()
        subprocess.run(c, check=True)
        times[k].append(time.perf_counter() - t0)
print(f"`berth run --rm --network none busybox true`, each build's CLI, alternating, {runs} each:")
for k, t in times.items():
    print(f"  {k}  median {statistics.median(t)*1000:6.1f} ms  mean {statistics.mean(t)*1000:6.1f} ms"
          f"  min {min(t)*1000:6.1f} ms")
print(f"  new/old: median {statistics.median(times['new'])/statistics.median(times['old']):.3f}")
PY
echo "the daemons alone (bench/api_client.py), $runs runs each, alternating:"
python3 "$repo/bench/api_client.py" run new "$work/new.sock" "$runs" old "$work/berth.sock" "$runs"
