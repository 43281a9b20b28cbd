#!/bin/bash
# N (100) containers started at once by concurrent clients, then removed at once, in berth and
# in Docker (bench/common.sh: private daemons, --network none, the same busybox image):
#  - CLI clients: N background `docker run -d busybox sleep 3600` (the docker 28 CLI against
#    each daemon), timed until every one has returned (each returns once its container is
#    started), then N background `docker rm -f ID`, timed likewise;
#  - API clients (bench/api_client.py): N connections released together, each create + start;
#    then N concurrent DELETE ?force=1. No CLI start-up in these times.
# After each start burst the containers listed as running are counted, after each removal
# the ones left. Containers are named by the clients (the same work for both daemons): with
# 100 concurrent creates, berth's generated names collide (a 409 for a few of them). ROUNDS rounds, berth and docker in turn. Goal (issue 13): a tenth of docker's
# times. Root only.
#
#   [ROUNDS=1] [BERTH=path/to/berth] bench/burst.sh [N]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
n=${1:-100}
rounds=${ROUNDS:-1}

bench_install
bench_init
start_berth
start_docker
echo "$(bench_context)"

cli() {
  case "$1" in
    berth) shift; bcli "$@" ;;
    docker) shift; dcli "$@" ;;
  esac
}
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# Waits for the given pids only: the daemons are this shell's background jobs too.
wait_all() {
  local p
  for p in "$@"; do wait "$p" || true; done
}

: >"$work/results"
for r in $(seq "$rounds"); do
  for e in berth docker; do
    cli $e run --rm --network none busybox true >/dev/null # warm-up, not timed
    pids=()
    t0=$(now)
    for i in $(seq "$n"); do
      cli $e run -d --name "burst-cli-$i" --network none busybox sleep 3600 >/dev/null 2>>"$work/$e-errors" &
      pids+=($!)
    done
    wait_all "${pids[@]}"
    t1=$(now)
    running=$(cli $e ps -q | wc -l)
    ids=$(cli $e ps -aq)
    pids=()
    t2=$(now)
    for id in $ids; do
      cli $e rm -f "$id" >/dev/null 2>>"$work/$e-errors" &
      pids+=($!)
    done
    wait_all "${pids[@]}"
    t3=$(now)
    left=$(cli $e ps -aq | wc -l)
    start_s=$(elapsed "$t0" "$t1")
    rm_s=$(elapsed "$t2" "$t3")
    echo "round $r, $e, CLI clients: $n x run -d in $start_s s ($running running);" \
      "rm -f of all in $rm_s s ($left left)"
    echo "cli $e $start_s $rm_s" >>"$work/results"
    if [ -s "$work/$e-errors" ]; then
      echo "  errors ($(wc -l <"$work/$e-errors")), first: $(head -3 "$work/$e-errors")"
      : >"$work/$e-errors"
    fi

    s=$(python3 "$repo/bench/api_client.py" burst-start "$work/$e.sock" "$n")
    d=$(python3 "$repo/bench/api_client.py" burst-rm "$work/$e.sock")
    python3 - "$r" "$e" "$s" "$d" "$work/results" <<'PY'
import json, sys
r, e, s, d, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
print(f"round {r}, {e}, API clients: create+start in {s['seconds']:.2f} s ({s['running']} running,"
      f" {s['error_count']} errors); DELETE ?force=1 of all in {d['seconds']:.2f} s ({d['left']} left,"
      f" {d['error_count']} errors)")
for err in s["errors"] + d["errors"]:
    print("  error:", err)
open(out, "a").write(f"api {e} {s['seconds']:.2f} {d['seconds']:.2f}\n")
PY
  done
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for client in ("cli", "api"):
    t = {e: ([float(x[2]) for x in rows if x[0] == client and x[1] == e],
             [float(x[3]) for x in rows if x[0] == client and x[1] == e]) for e in ("berth", "docker")}
    b, d = t["berth"], t["docker"]
    ms = statistics.median
    print(f"{client} clients: start berth {ms(b[0]):.2f} s, docker {ms(d[0]):.2f} s, ratio {ms(b[0])/ms(d[0]):.3f};"
          f" rm -f berth {ms(b[1]):.2f} s, docker {ms(d[1]):.2f} s, ratio {ms(b[1])/ms(d[1]):.3f}"
          f"  (goal: at most 0.100)")
PY
