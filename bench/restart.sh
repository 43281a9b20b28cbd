#!/bin/bash
# The time from a container's death to its restart by its restart policy, berth vs Docker
# (bench/common.sh: private daemons, --network none, the same busybox image). Each round
# starts a fresh `--restart always busybox sleep 3600` (so each restart is a first one, with
# the policy's first delay of 100 ms in both engines), kills its init with SIGKILL from the
# host, and waits until State.StartedAt changes. The time is the new StartedAt (the daemon's
# own record of the start) minus the moment before the kill: no polling interval in it. The
# engines take turns round by round. Prints each engine's median, mean and min, and
# berth/docker. Root only.
#
#   [BERTH=path/to/berth] bench/restart.sh [ROUNDS]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
rounds=${1:-20}

bench_install
bench_init
start_berth
start_docker
echo "$(bench_context)"

sock_of() {
  case "$1" in
    berth) bsock ;;
    docker) dsock ;;
  esac
}
cli() {
  case "$1" in
    berth) shift; bcli "$@" ;;
    docker) shift; dcli "$@" ;;
  esac
}
state() { curl -sf --unix-socket "$(sock_of "$1")" "http://x/containers/$2/json"; }

# One death and restart on engine $1: prints the seconds from the kill to the new StartedAt.
one() {
  local e=$1 id pid s0 s1 t0 i
  id=$(cli "$e" run -d --restart always --network none busybox sleep 3600)
  for i in $(seq 300); do
    [ "$(state "$e" "$id" | jq -r .State.Running)" = true ] && break
    sleep 0.01
  done
  read -r pid s0 < <(state "$e" "$id" | jq -r '"\(.State.Pid) \(.State.StartedAt)"')
  t0=$(date +%s.%N)
  kill -9 "$pid"
  s1=$s0
  for i in $(seq 3000); do
    s1=$(state "$e" "$id" | jq -r .State.StartedAt)
    [ "$s1" != "$s0" ] && break
    sleep 0.005
  done
  cli "$e" rm -f "$id" >/dev/null
  if [ "$s1" = "$s0" ]; then
    echo "$e: container $id was not restarted within 15 s" >&2
    return 1
  fi
  python3 -c "print(f'{$(date -d "$s1" +%s.%N) - $t0:.4f}')"
}

: >"$work/berth.times"
: >"$work/docker.times"
for e in berth docker; do one "$e" >/dev/null; done # warm-up, not counted
for r in $(seq "$rounds"); do
  for e in berth docker; do
    one "$e" >>"$work/$e.times"
  done
done

python3 - "$work/berth.times" "$work/docker.times" <<'PY'
import statistics, sys
res = {}
for name, path in zip(("berth", "docker"), sys.argv[1:]):
    t = [float(x) for x in open(path) if x.strip()]
    res[name] = t
    print(f"{name:6}: death → restart by policy over {len(t)} rounds: median {statistics.median(t)*1000:.1f} ms, "
          f"mean {statistics.mean(t)*1000:.1f} ms, min {min(t)*1000:.1f} ms")
b, d = statistics.median(res["berth"]), statistics.median(res["docker"])
print(f"berth/docker (medians): {b / d:.3f}")
print(f"berth/docker beyond the policy's 100 ms first delay: {(b - 0.1) / (d - 0.1):.3f}")
PY
