# bench/common.sh — sourced by bench/run.sh, bench/density.sh and bench/burst.sh: installs what
# the engine benchmarks need, builds berth, and starts three private engines side by side on
# the same busybox image (tests/make-busybox-rootfs.sh's tarball, imported into each):
#   - berth: `berth daemon` with its own data root, exec root and socket;
#   - docker: Debian's dockerd (docker.io, with the containerd it starts itself) with its own
#     data root, exec root and socket, no bridge, no iptables;
#   - podman: Debian's podman with its own --root/--runroot/--tmpdir and a containers.conf of its
#     own (CONTAINERS_CONF: no default ulimits, cgroupfs, file events), runc as its runtime.
# Every container runs with --network none: berth has no bridge networking yet, so all three
# do the same work. The docker CLI used for both daemons is the newest on the machine (28.x in
# /usr/local/bin), so the client costs the same on both sides.
#
# A script calls bench_init (work directory, exit trap) and then the start_* it needs; the trap
# removes every container, stops the daemons, unmounts and deletes everything under the work
# directory. Variables it may set before: BERTH (a berth binary; built otherwise).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo/tests/support/netclean.sh"

bench_install() {
  local need=() p
  for p in hyperfine docker.io podman runc conmon busybox-static curl jq python3; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq "${need[@]}" >/dev/null
  fi
  # The newest docker CLI on the machine talks to both daemons; Debian's 20.10 client if none.
  DOCKER_CLI=${DOCKER_CLI:-$(command -v docker)}
  BERTH=${BERTH:-$(bash "$repo/scripts/build-release.sh")}
  [ -x "$BERTH" ] || { echo "berth binary $BERTH not found" >&2; exit 1; }
}

# A machine-readable line of context for RESULTS.md.
bench_context() {
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average: $(cut -d' ' -f1-3 /proc/loadavg);" \
    "berth $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?');" \
    "docker CLI $("$DOCKER_CLI" --version | sed 's/Docker version //; s/,.*//');" \
    "dockerd $(dockerd --version | sed 's/Docker version //; s/,.*//');" \
    "podman $(podman --version | sed 's/podman version //'); runc $(runc --version | sed -n 's/runc version //p')"
}

work=
run=
berth_pid=
docker_pid=
podman_used=

bench_init() {
  work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  bash "$repo/tests/make-busybox-rootfs.sh" "$work/rootfs" "$work/busybox.tar" >/dev/null
  rm -rf "$work/rootfs"
  # The engines' runtime state (sockets, shims' files, the OCI runtimes' state) lives in /run
  # on a real host, a tmpfs; this machine's /run is on its disk, where every fsync of a state
  # file would cost a journal commit. All three get the same tmpfs, at a short path: a unix
  # socket's path has at most 107 bytes, and berth's shim socket is
  # <exec-root>/containers/<64-hex id>/shim.sock.
  run=$(mktemp -d /run/bb.XXXXXX)
  mount -t tmpfs -o mode=0711 bench-run "$run"
}

# Processes whose command line names a path under the work directory (shims, conmon,
# containerd-shim): the ones this script made, whatever their parent has become.
bench_own_pids() {
  local d pid
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = $$ ] && continue
    grep -qaE "($work|$run)/" "$d/cmdline" 2>/dev/null && echo "$pid"
  done
  return 0
}

# Stops a daemon by pid: SIGTERM, up to 20 s, then SIGKILL.
stop_pid() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

bench_cleanup() {
  local rc=$? ids
  set +e
  trap - EXIT INT TERM
  [ -n "$work" ] || exit $rc
  [ -n "$run" ] || run=$work/none
  if [ -n "$berth_pid" ]; then
    # berth's containers outlive its daemon by design: remove them through it first
    ids=$(bcli ps -aq 2>/dev/null)
    [ -n "$ids" ] && bcli rm -f $ids >/dev/null 2>&1
    stop_pid "$berth_pid"
  fi
  if [ -n "$docker_pid" ]; then
    ids=$(dcli ps -aq 2>/dev/null)
    [ -n "$ids" ] && dcli rm -f $ids >/dev/null 2>&1
    stop_pid "$docker_pid"
  fi
  if [ -n "$podman_used" ]; then
    pm rm -af -t 0 >/dev/null 2>&1
  fi
  # whatever of ours is still alive (a monitor whose container could not be removed)
  for p in $(bench_own_pids); do kill -9 "$p" 2>/dev/null; done
  grep -o " \($work\|$run\)\(/[^ ]*\)\? " /proc/mounts | sort -ru | while read -r m; do umount -l "$m"; done
  berth_net_cleanup "$work/berth"
  rm -rf "$work"
  [ -d "$run" ] && rmdir "$run"
  exit $rc
}

# --- berth ----------------------------------------------------------------------------------
bsock() { echo "$work/berth.sock"; }
bcli() { "$DOCKER_CLI" -H "unix://$work/berth.sock" "$@"; }

start_berth() {
  "$BERTH" daemon -H "unix://$work/berth.sock" --data-root "$work/berth" \
    --exec-root "$run/b" --pidfile "$work/berth.pid" \
    --config-file "$work/berth-daemon.json" >"$work/berth.log" 2>&1 &
  berth_pid=$!
  wait_api "$work/berth.sock" "$berth_pid" "$work/berth.log" berth
  "$BERTH" -H "unix://$work/berth.sock" import "$work/busybox.tar" busybox:latest >/dev/null
}

# --- docker ---------------------------------------------------------------------------------
dsock() { echo "$work/docker.sock"; }
dcli() { "$DOCKER_CLI" -H "unix://$work/docker.sock" "$@"; }

start_docker() {
  echo '{}' >"$work/docker-daemon.json"
  dockerd --data-root "$work/docker" --exec-root "$run/d" \
    -H "unix://$work/docker.sock" --pidfile "$work/docker.pid" --bridge=none \
    --iptables=false --ip6tables=false --storage-driver overlay2 \
    --config-file "$work/docker-daemon.json" >"$work/dockerd.log" 2>&1 &
  docker_pid=$!
  wait_api "$work/docker.sock" "$docker_pid" "$work/dockerd.log" dockerd
  dcli import "$work/busybox.tar" busybox:latest >/dev/null
}

# containerd as dockerd started it (its child)
containerd_pid() {
  local p
  for p in $(pgrep -P "$docker_pid" 2>/dev/null); do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = containerd ] && echo "$p"
  done
  return 0
}

# --- podman ---------------------------------------------------------------------------------
pm() {
  CONTAINERS_CONF=$work/containers.conf podman --root "$work/podman" --runroot "$run/p" \
    --tmpdir "$run/pt" --storage-driver overlay --runtime runc "$@"
}

start_podman() {
  cat >"$work/containers.conf" <<CONF
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  podman_used=1
  pm import "$work/busybox.tar" busybox:latest >/dev/null 2>&1
}

# Waits for a daemon's API socket to answer /_ping (up to 30 s).
wait_api() {
  local sock=$1 pid=$2 log=$3 name=$4 i
  for i in $(seq 300); do
    if curl -sf --unix-socket "$sock" http://x/_ping >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -20 "$log" >&2
      echo "$name exited before serving its API" >&2
      exit 1
    fi
    sleep 0.1
  done
  tail -20 "$log" >&2
  echo "$name did not serve its API within 30 s" >&2
  exit 1
}

# PSS of one process in KiB (0 if it is gone).
pss_kib() {
  awk '/^Pss:/ {print $2; found=1} END {if (!found) print 0}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0
}
