#!/bin/bash
# Real engines drive berth as their OCI runtime (root only):
#  - a private dockerd (Debian's docker.io) started with --add-runtime berth=<berth-runtime>:
#    docker run --runtime berth --rm --memory 32m, run -d + exec + pause/unpause + stop + rm;
#  - podman (Debian's) with --runtime <berth-runtime>: run --rm --memory, exec, pause/unpause,
#    stop, rm.
# The busybox image is imported from tests/make-busybox-rootfs.sh's tarball. Everything the
# script starts (dockerd, containers, storage) is removed at exit.
#
#   tests/engines.sh [path/to/berth]
set -u
here=$(cd "$(dirname "$0")" && pwd)
berth=${1:-$here/../target/debug/berth}
berth=$(cd "$(dirname "$berth")" && pwd)/$(basename "$berth")
[ -x "$berth" ] || { echo "FAIL: $berth not found" >&2; exit 1; }

skip() {
  if [ "${CI:-}" = true ]; then echo "FAIL: $1 (required under CI)" >&2; exit 1; fi
  echo "SKIP: engines: $1"; exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root"
for p in docker.io podman; do
  dpkg -s "$p" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null 2>&1 || skip "$p not installable"
done

work=$(mktemp -d /tmp/berth-engines.XXXXXX)
rt=$work/bin/berth-runtime
mkdir -p "$work/bin"
ln -s "$berth" "$rt"
sock=$work/docker.sock
docker="/usr/bin/docker -H unix://$sock"
pass=0 fail=0
check() { # name, expected substring, command...
  local name=$1 want=$2; shift 2
  local out
  out=$("$@" 2>&1)
  if [[ "$out" == *"$want"* ]]; then
    echo "ok    $name"; pass=$((pass + 1))
  else
    echo "FAIL  $name: wanted '$want', got: $out"; fail=$((fail + 1))
  fi
}
cleanup() {
  $docker rm -f $($docker ps -aq 2>/dev/null) >/dev/null 2>&1
  [ -f "$work/docker.pid" ] && kill "$(cat "$work/docker.pid")" 2>/dev/null
  for _ in $(seq 50); do [ -S "$sock" ] || break; sleep 0.1; done
  podman_cmd rm -af >/dev/null 2>&1
  podman_cmd system reset -f >/dev/null 2>&1
  grep -o "$work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

bash "$here/make-busybox-rootfs.sh" "$work/rootfs" "$work/busybox.tar" >/dev/null

# --- docker -----------------------------------------------------------------------------
dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" -H "unix://$sock" \
  --pidfile "$work/docker.pid" --bridge none --iptables=false --ip6tables=false \
  --add-runtime "berth=$rt" >"$work/dockerd.log" 2>&1 &
for _ in $(seq 100); do $docker info >/dev/null 2>&1 && break; sleep 0.2; done
$docker info >/dev/null 2>&1 || { cat "$work/dockerd.log"; echo "FAIL: dockerd did not start"; exit 1; }
$docker import "$work/busybox.tar" busybox:berth >/dev/null

run="$docker run --runtime berth --network none"
check "docker run --runtime berth --rm" "hello-docker" $run --rm busybox:berth echo hello-docker
check "docker run --memory 32m (limit in the cgroup)" "33554432" \
  $run --rm --memory 32m busybox:berth cat /sys/fs/cgroup/memory/memory.limit_in_bytes
check "docker --memory 32m OOM-kills" "137" \
  $run --rm --memory 32m --memory-swap 32m busybox:berth sh -c 'dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo $?'
check "docker exit code" "rc=3" sh -c "$run --rm busybox:berth sh -c 'exit 3'; echo rc=\$?"
cid=$($run -d busybox:berth sleep 300)
check "docker exec" "exec-ok" $docker exec "$cid" echo exec-ok
check "docker exec sees pid 1" "sleep 300" $docker exec "$cid" sh -c 'cat /proc/1/cmdline | tr "\0" " "'
check "docker pause" "paused" sh -c "$docker pause $cid >/dev/null && $docker inspect -f '{{.State.Status}}' $cid"
check "docker unpause" "running" sh -c "$docker unpause $cid >/dev/null && $docker inspect -f '{{.State.Status}}' $cid"
check "docker stop" "exited" sh -c "$docker stop -t 2 $cid >/dev/null && $docker inspect -f '{{.State.Status}}' $cid"
check "docker rm" "$cid" $docker rm "$cid"
check "docker run -t (console socket)" "tty-ok" sh -c "$run --rm -t busybox:berth sh -c 'test -t 0 && echo tty-ok' </dev/null"
# berth's own CLI asks `run` at its API version without a version round trip: dockerd 20.10
# (API 1.41) refuses that as too new, and the CLI negotiates and runs it then.
check "berth run against dockerd 20.10 (API version negotiated on refusal)" "hello-berth-cli" \
  "$berth" -H "unix://$sock" run --rm --network none busybox:berth echo hello-berth-cli

# --- podman -----------------------------------------------------------------------------
cat > "$work/containers.conf" <<CONF
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "berth"
[engine.runtimes]
berth = ["$rt"]
CONF
podman_cmd() {
  CONTAINERS_CONF=$work/containers.conf podman --root "$work/podman" --runroot "$work/podman-run" \
    --storage-driver overlay "$@"
}
podman_cmd import "$work/busybox.tar" localhost/busybox:berth >/dev/null 2>&1
prun() { podman_cmd run --network none "$@"; }
check "podman run --rm" "hello-podman" prun --rm localhost/busybox:berth echo hello-podman
check "podman run --memory 32m" "33554432" prun --rm --memory 32m localhost/busybox:berth cat /sys/fs/cgroup/memory/memory.limit_in_bytes
pid=$(prun -d localhost/busybox:berth sleep 300)
check "podman exec" "exec-ok" podman_cmd exec "$pid" echo exec-ok
check "podman pause" "paused" sh -c "CONTAINERS_CONF=$work/containers.conf podman --root $work/podman --runroot $work/podman-run pause $pid >/dev/null && CONTAINERS_CONF=$work/containers.conf podman --root $work/podman --runroot $work/podman-run inspect -f '{{.State.Status}}' $pid"
check "podman unpause" "running" sh -c "CONTAINERS_CONF=$work/containers.conf podman --root $work/podman --runroot $work/podman-run unpause $pid >/dev/null && CONTAINERS_CONF=$work/containers.conf podman --root $work/podman --runroot $work/podman-run inspect -f '{{.State.Status}}' $pid"
check "podman stop" "$pid" podman_cmd stop -t 2 "$pid"
check "podman rm" "$pid" podman_cmd rm "$pid"

echo "engines: $pass passed, $fail failed"
[ "$fail" = 0 ]
