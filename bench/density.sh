#!/bin/bash
# Memory per idle container: N (100) `sleep 3600` containers in berth, Docker and Podman (one
# engine at a time, the others idle), --network none, the same busybox image (bench/common.sh).
# Per container = (sum of the monitors' PSS + growth of the daemons' PSS) / N, PSS from
# /proc/PID/smaps_rollup (shared pages divided among the processes that map them, so a binary
# shared by a daemon and its shims is counted once in all):
#   berth:  the `berth shim` processes      + berth daemon's growth
#   docker: the containerd-shim-runc-v2 ones + dockerd's and containerd's growth
#   podman: the conmon processes             (no daemon)
# The containers' own processes (busybox sleep) are the same for all and not counted. A
# daemon's baseline is taken after one `run --rm` (what it allocates once is not per
# container). Goal (issue 13): at most 350 KiB per container for berth. Root only.
#
#   [BERTH=path/to/berth] bench/density.sh [N]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
n=${1:-100}

bench_install
bench_init
start_berth
start_docker
start_podman
echo "$(bench_context)"

# The processes that monitor the containers of one engine (all under our work directory).
monitors() {
  local p comm argv1
  for p in $(bench_own_pids); do
    comm=$(cat "/proc/$p/comm" 2>/dev/null) || continue
    argv1=$(tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline" | sed -n 2p)
    case "$1" in
      berth) [ "$comm" = berth ] && [ "$argv1" = shim ] && echo "$p" ;;
      docker) [ "$comm" = containerd-shim ] && echo "$p" ;;
      podman) [ "$comm" = conmon ] && echo "$p" ;;
    esac
  done
  return 0
}
# berth's shim zygote (forks the shims; shared by all containers) counts with the daemon
berth_zygote() {
  local p
  for p in $(bench_own_pids); do
    [ "$(tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline" | sed -n 2p)" = shim-zygote ] && echo "$p"
  done
  return 0
}
daemons() {
  case "$1" in
    berth) echo "$berth_pid $(berth_zygote)" ;;
    docker) echo "$docker_pid $(containerd_pid)" ;;
    podman) ;;
  esac
}
sum_pss() {
  local p s=0
  for p in "$@"; do s=$((s + $(pss_kib "$p"))); done
  echo $s
}
sum_rss() {
  local p s=0
  for p in "$@"; do s=$((s + $(awk '/^Rss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0))); done
  echo $s
}
cli() {
  case "$1" in
    berth) shift; bcli "$@" ;;
    docker) shift; dcli "$@" ;;
    podman) shift; pm "$@" ;;
  esac
}

results=()
for e in berth docker podman; do
  cli $e run --rm --network none busybox true >/dev/null
  sleep 1
  # shellcheck disable=SC2046
  base=$(sum_pss $(daemons $e))
  for i in $(seq "$n"); do
    cli $e run -d --network none busybox sleep 3600 >/dev/null
  done
  running=$(cli $e ps -q | wc -l)
  sleep 2
  mons=$(monitors $e)
  nm=$(echo "$mons" | grep -c . || true)
  # shellcheck disable=SC2086
  mon_pss=$(sum_pss $mons)
  # shellcheck disable=SC2086
  mon_rss=$(sum_rss $mons)
  # shellcheck disable=SC2046
  after=$(sum_pss $(daemons $e))
  growth=$((after - base))
  per=$(((mon_pss + growth) / n))
  echo "$e: $running running, $nm monitors: PSS $mon_pss KiB (RSS $mon_rss KiB), i.e." \
    "$((mon_pss / (nm > 0 ? nm : 1))) KiB each; daemon PSS $base -> $after KiB ($growth);" \
    "per container: $per KiB"
  results+=("$e $per")
  # (podman's rm -f stops first, with a 10 s timeout that an init ignoring SIGTERM waits out)
  if [ $e = podman ]; then
    # shellcheck disable=SC2046
    cli $e rm -f -t 0 $(cli $e ps -aq) >/dev/null
  else
    # shellcheck disable=SC2046
    cli $e rm -f $(cli $e ps -aq) >/dev/null
  fi
done
python3 - "${results[@]}" <<'PY'
import sys
r = dict((a.split()[0], int(a.split()[1])) for a in sys.argv[1:])
b, d, p = r["berth"], r["docker"], r["podman"]
print(f"KiB per idle container: berth {b}, docker {d}, podman {p}")
print(f"ratio berth/docker {b / d:.3f}, berth/podman {b / p:.3f}  (goal: berth at most 350 KiB)")
PY
