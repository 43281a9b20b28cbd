#!/bin/bash
# `docker stats --no-stream` latency with N (50) running containers: berth vs Docker, the same
# docker CLI (28.x) against each daemon, the same busybox image, --network none
# (bench/common.sh). Both daemons pair two samples a second apart for each container
# (stream=false without one-shot), so about one second of each run is that wait; the rest is
# what the engine spends reading N cgroups and answering. hyperfine runs each side a few
# times after a warmup; the mean ratio berth/docker is printed. Root only.
#
#   [BERTH=path/to/berth] [RUNS=5] bench/stats.sh [N]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
n=${1:-50}
runs=${RUNS:-5}

bench_install
bench_init
echo '{}' >"$work/berth-daemon.json"
start_berth
start_docker
echo "$(bench_context)"

for e in berth docker; do
  c=bcli
  [ $e = docker ] && c=dcli
  for i in $(seq "$n"); do
    $c run -d --network none --name "st$e$i" busybox sleep 3600 >/dev/null
  done
  running=$($c ps -q | wc -l)
  echo "$e: $running running"
  [ "$running" -ge "$n" ] || { echo "$e: only $running of $n containers run" >&2; exit 1; }
  # every row must be there: a stats call that drops containers is not a faster one
  rows=$($c stats --no-stream --format '{{.Name}}' | grep -c "^st$e")
  [ "$rows" -eq "$n" ] || { echo "$e: stats --no-stream showed $rows of $n" >&2; exit 1; }
done

hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$work/stats.json" \
  -n berth "$DOCKER_CLI -H unix://$work/berth.sock stats --no-stream" \
  -n docker "$DOCKER_CLI -H unix://$work/docker.sock stats --no-stream" >&2

python3 - "$work/stats.json" "$n" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, d = r["berth"]["mean"], r["docker"]["mean"]
print(f"stats --no-stream with {sys.argv[2]} containers: berth {b * 1000:.0f} ms "
      f"(±{r['berth']['stddev'] * 1000:.0f}), docker {d * 1000:.0f} ms (±{r['docker']['stddev'] * 1000:.0f})")
print(f"ratio berth/docker {b / d:.3f}")
PY
