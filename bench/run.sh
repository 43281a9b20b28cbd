#!/bin/bash
# `run --rm busybox true` through berth's daemon, Docker (dockerd 20.10 + containerd + runc)
# and Podman (+ conmon + runc), side by side on the same machine and the same busybox image,
# all with --network none (bench/common.sh starts the three privately). Root only.
#
#  1. hyperfine, ROUNDS rounds of RUNS runs of each command, the engines taking turns round
#     by round, every run counted: median and mean, ratios to docker.
#     The client for berth: `berth run` if the berth CLI has it, and always the docker CLI
#     (28.x) against berth's socket, the same client docker's row uses.
#  2. PAIRS runs of each engine in turn, run by run (from Python: adds ~1 ms to each).
#  3. The daemons alone, without a CLI: API_RUNS x create (AutoRemove) + wait?condition=removed
#     + start + the wait's answer from bench/api_client.py, for berth and dockerd in turn, with
#     the median of each phase.
# Goal (issue 13): berth at 1/25 of docker's time.
#
#   [ROUNDS=3] [PAIRS=20] [API_RUNS=50] [BERTH=path/to/berth] bench/run.sh [RUNS-PER-ROUND]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
runs=${1:-10}
rounds=${ROUNDS:-3}
pairs=${PAIRS:-20}
api_runs=${API_RUNS:-50}

bench_install
bench_init
start_berth
start_docker
start_podman
export CONTAINERS_CONF=$work/containers.conf
echo "$(bench_context)"

names=()
cmds=()
add() { names+=("$1"); cmds+=("$2"); }
# berth's own CLI, once it has `run` (it talks to the daemon through the API like the others)
if "$BERTH" run --help >/dev/null 2>&1 &&
  "$BERTH" -H "unix://$work/berth.sock" run --rm --network none busybox true >/dev/null 2>&1; then
  add "berth (berth CLI)" "$BERTH -H unix://$work/berth.sock run --rm --network none busybox true"
else
  echo "berth has no working \`berth -H ... run\` yet: berth is timed through the docker CLI only"
fi
add "berth (docker CLI)" "$DOCKER_CLI -H unix://$work/berth.sock run --rm --network none busybox true"
add "docker" "$DOCKER_CLI -H unix://$work/docker.sock run --rm --network none busybox true"
add "podman" "podman --root $work/podman --runroot $run/p --tmpdir $run/pt --storage-driver overlay --runtime runc run --rm --network none busybox true"

# each must work before it is timed
for i in "${!cmds[@]}"; do
  timeout 120 ${cmds[$i]} || { echo "${names[$i]}: \`${cmds[$i]}\` failed" >&2; exit 1; }
done
# and the CLI alone, for scale: the docker CLI's start-up and one request
add "docker CLI alone (version)" "$DOCKER_CLI -H unix://$work/berth.sock version"

for r in $(seq "$rounds"); do
  args=()
  for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
  hyperfine -N --warmup 2 --runs "$runs" --export-json "$work/hf-$r.json" "${args[@]}" >/dev/null
done
python3 - "${names[@]}" -- "$work"/hf-*.json <<'PY'
import json, statistics, sys
sep = sys.argv.index("--")
names, files = sys.argv[1:sep], sys.argv[sep + 1:]
times = {}
for f in files:
    for x in json.load(open(f))["results"]:
        times.setdefault(x["command"], []).extend(x["times"])
print(f"hyperfine, {len(files)} rounds:")
d = times["docker"]
for n in names:
    t = times[n]
    print(f"  {n:28} median {statistics.median(t)*1000:7.1f} ms  mean {statistics.mean(t)*1000:7.1f} ms"
          f"  min {min(t)*1000:7.1f}  ({len(t)} runs)  ratio to docker: median "
          f"{statistics.median(t)/statistics.median(d):.3f}, mean {statistics.mean(t)/statistics.mean(d):.3f}")
print("  (goal: berth at most 0.040 of docker)")
PY

# run by run, the engines in turn (they see the same moment of the machine)
python3 - "$pairs" "${names[@]:0:${#names[@]}-1}" -- "${cmds[@]:0:${#cmds[@]}-1}" <<'PY'
import statistics, subprocess, sys, time
pairs = int(sys.argv[1])
sep = sys.argv.index("--")
names, cmds = sys.argv[2:sep], [c.split() for c in sys.argv[sep + 1:]]
times = [[] for _ in cmds]
for _ in range(pairs):
    for t, c in zip(times, cmds):
        start = time.perf_counter()
        subprocess.run(c, check=True)
        t.append(time.perf_counter() - start)
d = times[names.index("docker")]
print(f"alternating run by run, {pairs} each:")
for n, t in zip(names, times):
    print(f"  {n:28} median {statistics.median(t)*1000:7.1f} ms  mean {statistics.mean(t)*1000:7.1f} ms"
          f"  ratio to docker: median {statistics.median(t)/statistics.median(d):.3f}")
PY

echo "the daemons alone (bench/api_client.py, no CLI), $api_runs runs each, alternating:"
python3 "$repo/bench/api_client.py" run berth "$work/berth.sock" "$api_runs" dockerd "$work/docker.sock" "$api_runs"
