#!/bin/bash
# Acceptance tests of `berth daemon` driven by real clients: the docker CLI (28.x on PATH and
# Debian's 20.10 at /usr/bin/docker), the Python docker SDK and curl. Makes its own busybox
# image, starts its own daemon(s) in a temp dir with a unique socket, runs every scenario,
# prints ok / FAIL / SKIP: reason per check and a summary, and cleans up everything (daemon,
# shims, containers, mounts, cgroups, temp dir) on exit, also on failure.
#
#   tests/engine/run.sh /path/to/berth            # every scenario
#   ONLY="cli sdk" tests/engine/run.sh ./berth     # some of them: cli sdk networks crash leak bad volumes events stateful tls images dayops compose selfheal
#   LEAK_N=300 tests/engine/run.sh ./berth         # leak cycles (default 300: about 35 s on a quiet machine)
set -u

if [ $# -lt 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 <berth-binary>" >&2
    exit 2
fi
BERTH=$(readlink -f "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ONLY=${ONLY:-"cli sdk networks networks6 netfeat crash leak bad volumes events stateful tls images dayops compose"}
LEAK_N=${LEAK_N:-300}

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: the daemon needs root"
    [ "${CI:-}" = true ] && exit 1
    exit 0
fi

# short: the shims' sockets live under the exec root and must fit in sun_path (108 bytes)
T=$(mktemp -d /tmp/bA.XXXXXX)
SOCK=$T/berth.sock
DATA=$T/data
RUN=$T/run
export DOCKER_HOST=unix://$SOCK
# the CLIs must not read the user's config (contexts, credential helpers)
export DOCKER_CONFIG=$T/docker-config
mkdir -p "$DOCKER_CONFIG"
DOCKER28=$(command -v docker)
DOCKER20=/usr/bin/docker
NPASS=0
NFAIL=0
NSKIP=0
FAILED=()

ok() { echo "ok   $*"; NPASS=$((NPASS + 1)); }
fail() { echo "FAIL $*"; NFAIL=$((NFAIL + 1)); FAILED+=("$*"); }
skip() {
    echo "SKIP: $*"
    NSKIP=$((NSKIP + 1))
    if [ "${CI:-}" = true ]; then fail "skipped under CI: $*"; fi
}
# check NAME CMD...: ok if CMD succeeds
check() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name"; fi
}
# eq NAME WANT GOT
eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: want [$2] got [$3]"; fi
}
contains() {
    case "$3" in *"$2"*) ok "$1" ;; *) fail "$1: [$3] lacks [$2]" ;; esac
}

DAEMON_PID=
start_daemon() {
    BERTH_DATA_ROOT=$DATA setsid "$BERTH" daemon -H "unix://$SOCK" --exec-root "$RUN" \
        --pidfile "$T/daemon.pid" </dev/null >>"$T/daemon.log" 2>&1 &
    DAEMON_PID=$!
    local i
    for i in $(seq 1 100); do
        if curl -sf --max-time 2 --unix-socket "$SOCK" http://x/_ping >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "daemon did not answer /_ping; log:" >&2
    tail -20 "$T/daemon.log" >&2
    return 1
}
stop_daemon() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"
        local i
        for i in $(seq 1 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null
    fi
    DAEMON_PID=
}
ping_ok() { curl -sf --max-time 5 --unix-socket "$SOCK" http://x/_ping >/dev/null; }

# Processes whose command line names our temp dir: the daemon and the shims it started.
our_pids() {
    local p
    for p in /proc/[0-9]*; do
        if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "$T"; then echo "${p#/proc/}"; fi
    done
}
shim_pids() {
    local p
    for p in $(our_pids); do
        [ "$p" = "$DAEMON_PID" ] && continue
        tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q ' shim ' && echo "$p"
    done
}
our_mounts() { grep -F -- "$T" /proc/self/mountinfo | awk '{print $5}'; }
# every container id this run has made (names of their dirs); cgroups are /berth/<id>
SEEN_IDS=$T/ids
remember_ids() {
    ls "$DATA/containers" "$RUN/containers" 2>/dev/null | grep -E '^[0-9a-f]{64}$' >>"$SEEN_IDS"
    sort -u -o "$SEEN_IDS" "$SEEN_IDS"
}
our_cgroups() {
    local id c
    [ -f "$SEEN_IDS" ] || return 0
    for id in $(cat "$SEEN_IDS"); do
        for c in /sys/fs/cgroup/*/berth/"$id" /sys/fs/cgroup/berth/"$id"; do
            [ -d "$c" ] && echo "$c"
        done
    done
}

. "$REPO/tests/support/netclean.sh"
cleanup() {
    set +e
    remember_ids
    if [ -S "$SOCK" ] && ping_ok 2>/dev/null; then
        local ids
        ids=$("$DOCKER28" ps -aq 2>/dev/null)
        [ -n "$ids" ] && "$DOCKER28" rm -f $ids >/dev/null 2>&1
    fi
    stop_daemon
    local p
    for p in $(our_pids); do kill -KILL "$p" 2>/dev/null; done
    # containers' processes of shims we had to kill: their cgroups name them
    local c
    for c in $(our_cgroups); do
        for p in $(cat "$c/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    done
    sleep 0.2
    for c in $(our_cgroups); do
        [ -f "$c/freezer.state" ] && echo THAWED >"$c/freezer.state"
        rmdir "$c" 2>/dev/null
    done
    local m
    for m in $(our_mounts | sort -r); do umount -l "$m" 2>/dev/null; done
    berth_net_cleanup "$DATA"
    berth_net_cleanup "$T/t/data"
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "# berth acceptance: $BERTH, temp $T"
sh "$REPO/tests/make-busybox-rootfs.sh" "$T/rootfs" "$T/bb.tar" >/dev/null 2>&1 \
    || { echo "FAIL making the busybox rootfs"; exit 1; }
start_daemon || { echo "FAIL daemon start"; exit 1; }
"$BERTH" -H "unix://$SOCK" import "$T/bb.tar" busybox:latest >/dev/null \
    || { echo "FAIL berth import busybox"; exit 1; }

TIMES=()
for s in $ONLY; do
    t0=$SECONDS
    # shellcheck source=/dev/null
    . "$HERE/$s.sh"
    "scenario_$s"
    remember_ids
    TIMES+=("$s $((SECONDS - t0))s")
    if ! ping_ok; then
        fail "$s: daemon does not answer /_ping after the scenario"
        stop_daemon
        start_daemon || { echo "FAIL daemon restart"; break; }
    fi
done

echo "# scenario times: ${TIMES[*]}"
echo "# $NPASS ok, $NFAIL failed, $NSKIP skipped"
for f in "${FAILED[@]}"; do echo "#   FAIL $f"; done
[ "$NFAIL" = 0 ]
