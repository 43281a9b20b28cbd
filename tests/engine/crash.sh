# Scenario 3: kill -9 of the daemon with 50 containers logging; a new daemon finds them all,
# their logs have no gap, one that exited meanwhile has its exit code; rm -f of all leaves
# nothing behind. Sourced by run.sh.
CRASH_N=${CRASH_N:-50}

# The daemon's pooled network namespaces; with an argument, those that hold a link of that
# name. (Their inode numbers would not tell old from new: the kernel reuses them.)
pool_entries() {
    local f
    for f in "$RUN"/netns-pool/*; do
        [ -e "$f" ] || continue
        if [ -z "${1:-}" ] || nsenter --net="$f" ip link show "$1" >/dev/null 2>&1; then
            echo "$f"
        fi
    done
}

scenario_crash() {
    echo "# scenario crash"
    local i pids=() ids out bad n
    for i in $(seq 1 "$CRASH_N"); do
        timeout 60 "$DOCKER28" run -d --name "crash$i" busybox \
            sh -c 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done' >/dev/null 2>"$T/crash-run$i.err" &
        pids+=($!)
        # at most 10 clients at once
        if [ $((i % 10)) = 0 ]; then wait "${pids[@]}"; pids=(); fi
    done
    [ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
    n=$(timeout 10 "$DOCKER28" ps -q --filter name=crash | wc -l)
    eq "crash: $CRASH_N containers running before the kill" "$CRASH_N" "$n"
    timeout 30 "$DOCKER28" run -d --name crashexit busybox sh -c 'sleep 1; exit 33' >/dev/null
    sleep 0.3
    remember_ids
    # the leftover checks below look for these: make sure they can see them
    n=$(our_cgroups | grep -c /memory/)
    eq "crash: a memory cgroup per container is visible to the checks" $((CRASH_N + 1)) "$n"
    # the killed daemon's pool of prepared network namespaces: the next daemon sweeps it
    # (each marked with a link of its own, to be told from the next daemon's)
    local f marked veth_prefix
    veth_prefix=bq$(printf %s "$DATA" | sha256sum | cut -c1-6)
    for f in $(pool_entries); do nsenter --net="$f" ip link add crashmark type bridge; done
    marked=$(pool_entries crashmark)
    [ -n "$marked" ] || fail "crash: no marked netns in the pool before the kill (BERTH_NETNS_POOL=0?)"
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
    sleep 2
    if ! start_daemon; then
        fail "crash: the new daemon does not start"
        return
    fi
    # old entries unbound (the kernel takes their veths along, a moment later), new ones made
    local now kept veths mounts
    for i in $(seq 1 50); do
        now=$(pool_entries)
        kept=$(pool_entries crashmark)
        veths=$(ip -o link show | grep -c ": $veth_prefix")
        # full: as many entries with a veth as with lo only
        [ -z "$kept" ] && [ "$(echo "$now" | grep -c .)" = $((2 * ${BERTH_NETNS_POOL:-2})) ] &&
            [ "$veths" -le "${BERTH_NETNS_POOL:-2}" ] && break
        sleep 0.1
    done
    eq "crash: no pooled netns of the killed daemon kept" "" "$kept"
    eq "crash: the new daemon filled its netns pool" $((2 * ${BERTH_NETNS_POOL:-2})) "$(echo "$now" | grep -c .)"
    check "crash: pooled veths at most the pool's size ($veths)" [ "$veths" -le "${BERTH_NETNS_POOL:-2}" ]
    mounts=$(grep -cF -- "$RUN/netns-pool/" /proc/self/mountinfo)
    eq "crash: one mount per pooled netns" "$(echo "$now" | grep -c .)" "$mounts"
    out=$(timeout 10 "$DOCKER28" ps --filter name=crash --format '{{.Names}}' | grep -c '^crash[0-9]')
    eq "crash: all $CRASH_N running and listed by the new daemon" "$CRASH_N" "$out"
    out=$(timeout 10 "$DOCKER28" inspect --format '{{.State.Status}} {{.State.ExitCode}}' crashexit 2>&1)
    eq "crash: the container that exited while the daemon was down" "exited 33" "$out"
    out=$(timeout 10 "$DOCKER28" inspect --format '{{.State.FinishedAt}}' crashexit 2>&1)
    case "$out" in 0001-* | "") fail "crash: FinishedAt of the exited container: [$out]" ;; *) ok "crash: FinishedAt recorded ($out)" ;; esac
    # a second of logging through the new daemon too
    sleep 1
    bad=
    for i in $(seq 1 "$CRASH_N"); do
        # lines must be 1, 2, 3, ...: a gap (or a duplicate) means lost (or doubled) output
        if ! timeout 10 "$DOCKER28" logs "crash$i" 2>&1 | awk 'NR != $1 { exit 1 } END { if (NR < 25) exit 1 }'; then
            bad="$bad crash$i"
        fi
    done
    eq "crash: logs numbered without a gap across the restart (>= 25 lines each)" "" "$bad"
    out=$(timeout 10 "$DOCKER28" exec crash1 echo exec-after-restart 2>&1)
    eq "crash: exec into a container after the restart" exec-after-restart "$out"

    remember_ids
    ids=$(timeout 10 "$DOCKER28" ps -aq)
    timeout 120 "$DOCKER28" rm -f $ids >/dev/null 2>&1
    eq "crash: ps -a empty after rm -f of all" "" "$(timeout 10 "$DOCKER28" ps -aq)"
    eq "crash: no mount under the data root" "" "$(grep -F -- "$DATA" /proc/self/mountinfo)"
    eq "crash: no cgroup left" "" "$(our_cgroups)"
    eq "crash: no shim process left" "" "$(shim_pids)"
    eq "crash: no state dir left" "" "$(ls "$RUN/containers" 2>/dev/null)"
    eq "crash: no container dir left" "" "$(ls "$DATA/containers" 2>/dev/null)"
}
