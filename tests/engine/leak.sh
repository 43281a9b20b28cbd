# Scenario 4: LEAK_N `run --rm busybox true` cycles leave the daemon's fds, threads and RSS
# flat and nothing behind. Sourced by run.sh.
daemon_usage() {
    local fds threads rss
    fds=$(ls "/proc/$DAEMON_PID/fd" | wc -l)
    threads=$(awk '/^Threads:/{print $2}' "/proc/$DAEMON_PID/status")
    rss=$(awk '/^VmRSS:/{print $2}' "/proc/$DAEMON_PID/status")
    echo "$fds $threads $rss"
}

# what the store holds outside its databases (which only grow by pages): snapshots, blobs,
# container and state dirs; without the spare directories the engine keeps from removed
# containers for the next ones (crates/engine/src/trash.rs), whose names change as they are
# used and which are counted on their own
store_files() { find "$DATA" "$RUN" -not -name '*.db*' -not -path '*/.spare-*' | sort; }
spares() { find "$DATA/$1" -maxdepth 1 -name '.spare-*' | wc -l; }

scenario_leak() {
    echo "# scenario leak ($LEAK_N cycles)"
    local i failed=0 b a
    # warm-up: the allocator's arenas and the databases' caches reach their working size
    for i in $(seq 1 50); do timeout 30 "$DOCKER28" run --rm busybox true || failed=$((failed + 1)); done
    sleep 0.5
    store_files >"$T/files.before"
    read -r -a b <<<"$(daemon_usage)"
    for i in $(seq 1 "$LEAK_N"); do
        timeout 30 "$DOCKER28" run --rm busybox true || failed=$((failed + 1))
    done
    sleep 0.5
    read -r -a a <<<"$(daemon_usage)"
    eq "leak: every run --rm succeeded" 0 "$failed"
    echo "     fds ${b[0]} -> ${a[0]}, threads ${b[1]} -> ${a[1]}, RSS ${b[2]} -> ${a[2]} KiB"
    if [ "${a[0]}" -le $((b[0] + 5)) ]; then ok "leak: fds flat (${b[0]} -> ${a[0]})"; else fail "leak: fds ${b[0]} -> ${a[0]}"; fi
    if [ "${a[1]}" -le $((b[1] + 4)) ]; then ok "leak: threads flat (${b[1]} -> ${a[1]})"; else fail "leak: threads ${b[1]} -> ${a[1]}"; fi
    if [ "${a[2]}" -le $((b[2] + 8192)) ]; then ok "leak: RSS flat (${b[2]} -> ${a[2]} KiB)"; else fail "leak: RSS ${b[2]} -> ${a[2]} KiB"; fi
    remember_ids
    eq "leak: ps -a empty" "" "$(timeout 10 "$DOCKER28" ps -aq)"
    eq "leak: no mount under the data root" "" "$(grep -F -- "$DATA" /proc/self/mountinfo)"
    eq "leak: no cgroup left" "" "$(our_cgroups)"
    eq "leak: no shim process left" "" "$(shim_pids)"
    eq "leak: no state dir left" "" "$(ls "$RUN/containers" 2>/dev/null)"
    eq "leak: no container dir left" "" "$(ls "$DATA/containers" 2>/dev/null)"
    store_files >"$T/files.after"
    eq "leak: no file left in the data and exec roots" "" "$(diff "$T/files.before" "$T/files.after" | grep '^[<>]' | head -5)"
    local c s
    c=$(spares containers) s=$(spares snapshots)
    if [ "$c" -le 8 ] && [ "$s" -le 8 ]; then
        ok "leak: spare directories bounded ($c container, $s snapshot)"
    else
        fail "leak: $c container and $s snapshot spare directories (at most 8 each)"
    fi
}
