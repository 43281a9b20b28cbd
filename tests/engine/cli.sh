# Scenario 1: the docker CLI, 28.x and Debian's 20.10, against berth. Sourced by run.sh.

# d ARGS...: the client under test, never allowed to hang the suite
d() { timeout 30 "$DK" "$@"; }

cli_one() {
    local tag=$1 out rc id n
    n=acc$tag$$

    out=$(d run --rm busybox echo hi 2>&1); rc=$?
    eq "$tag run --rm echo output" hi "$out"
    eq "$tag run --rm echo exit code" 0 "$rc"
    d run --rm busybox sh -c 'exit 7' >/dev/null 2>&1; eq "$tag run exit 7" 7 $?
    d run --rm busybox nonexistent-cmd >/dev/null 2>&1; eq "$tag run unknown command" 127 $?
    d run --rm busybox /etc/passwd >/dev/null 2>&1; eq "$tag run non-executable" 126 $?
    out=$(d run --rm nosuchimage:acc true 2>&1); rc=$?
    eq "$tag run unknown image exit code" 125 "$rc"
    case "$out" in
        *"No such image"* | *"Unable to find image"*) ok "$tag run unknown image message" ;;
        *) fail "$tag run unknown image message: $out" ;;
    esac

    # run -d, logs
    id=$(d run -d --name "$n" busybox sh -c 'echo one; echo two; echo three >&2; sleep 300' 2>&1)
    eq "$tag run -d prints an id" 64 "${#id}"
    sleep 0.5
    out=$(d logs "$n" 2>&1); eq "$tag logs" "$(printf 'one\ntwo\nthree')" "$out"
    out=$(d logs "$n" 2>/dev/null); eq "$tag logs stdout only on stdout" "$(printf 'one\ntwo')" "$out"
    out=$(d logs --tail 1 "$n" 2>&1); eq "$tag logs --tail 1" "three" "$out"
    out=$(d logs -t "$n" 2>/dev/null | head -1)
    if [[ $out =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z\ one$ ]]; then ok "$tag logs -t"; else fail "$tag logs -t: [$out]"; fi

    # ps
    d run --name "${n}x" busybox sh -c 'exit 3' >/dev/null 2>&1
    out=$(d ps --format '{{.Names}}'); contains "$tag ps lists running" "$n" "$out"
    case "$out" in *"${n}x"*) fail "$tag ps lists an exited container" ;; *) ok "$tag ps hides exited" ;; esac
    out=$(d ps -a --format '{{.Names}} {{.Status}}'); contains "$tag ps -a lists exited" "${n}x Exited (3)" "$out"
    out=$(d ps -q); contains "$tag ps -q" "${id:0:12}" "$out"
    out=$(d ps -a --filter "name=${n}x" --format '{{.Names}}'); eq "$tag ps --filter name=" "${n}x" "$out"
    out=$(d ps -a --filter status=exited --format '{{.Names}}')
    case "$out" in *"${n}x"*) case "$out" in *"$n"$'\n'* | "$n") fail "$tag ps status=exited lists a running one: $out" ;; *) ok "$tag ps --filter status=exited" ;; esac ;; *) fail "$tag ps --filter status=exited: [$out]" ;; esac
    out=$(d inspect --format '{{.State.Status}} {{.State.ExitCode}}' "${n}x"); eq "$tag inspect --format exited" "exited 3" "$out"
    out=$(d inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$n"); eq "$tag inspect --format running" "running 0" "$out"
    out=$(d inspect --format '{{index .HostConfig.MaskedPaths 0}} {{len .HostConfig.ReadonlyPaths}}' "$n")
    eq "$tag inspect HostConfig.MaskedPaths/ReadonlyPaths (the defaults, as dockerd records them)" "/proc/asound 5" "$out"

    # exec
    out=$(d exec "$n" echo in-exec 2>&1); eq "$tag exec output" in-exec "$out"
    d exec "$n" sh -c 'exit 5'; eq "$tag exec exit code" 5 $?
    out=$(d exec -e ACC=val "$n" sh -c 'echo $ACC'); eq "$tag exec -e" val "$out"
    out=$(d exec -w /tmp "$n" pwd); eq "$tag exec -w" /tmp "$out"
    out=$(d exec -u 65534 "$n" id -u); eq "$tag exec -u" 65534 "$out"

    # through a real pty
    # (the typed line holds '""' so that its echo differs from the command's output)
    pty() { timeout 30 python3 "$REPO/tests/cli/pty_run.py" 24 80 "$@" 2>&1 | tr -d '\033'; }
    out=$(pty 'echo pty""marker\nexit 4\n' -- "$DK" exec -it "$n" sh)
    case $out in
    *'pty""marker'*ptymarker*rc=4) ok "$tag exec -it through a pty" ;;
    *) fail "$tag exec -it through a pty: $out" ;;
    esac
    out=$(pty 'echo pty""marker\nexit 6\n' -- "$DK" run --rm -it busybox sh)
    case $out in
    *'pty""marker'*ptymarker*rc=6) ok "$tag run -it through a pty" ;;
    *) fail "$tag run -it through a pty: $out" ;;
    esac

    # top, pause/unpause
    out=$(d top "$n" 2>&1); contains "$tag top" "sleep 300" "$out"
    d pause "$n" >/dev/null 2>&1
    out=$(d inspect --format '{{.State.Status}}' "$n"); eq "$tag pause status" paused "$out"
    local pid st
    pid=$(d inspect --format '{{.State.Pid}}' "$n")
    st=$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null)
    case "$st" in D | T | S) ;; esac
    local fz
    fz=$(cat /sys/fs/cgroup/freezer/berth/"$id"/freezer.state 2>/dev/null || echo "?")
    if [ "$fz" = FROZEN ] || [ "$st" = T ] || [ "$st" = D ]; then ok "$tag pause freezes (freezer $fz, state $st)"; else fail "$tag pause freezes: freezer $fz, state $st"; fi
    d unpause "$n" >/dev/null 2>&1
    out=$(d inspect --format '{{.State.Status}}' "$n"); eq "$tag unpause status" running "$out"
    out=$(d exec "$n" echo alive 2>&1); eq "$tag exec after unpause" alive "$out"

    # rename, name conflict
    d rename "$n" "${n}r" >/dev/null 2>&1
    out=$(d inspect --format '{{.Name}}' "${n}r" 2>&1); eq "$tag rename" "/${n}r" "$out"
    out=$(d run -d --name "${n}r" busybox true 2>&1); rc=$?
    eq "$tag name conflict exit code" 125 "$rc"
    contains "$tag name conflict message" 'is already in use' "$out"

    # kill -s, stop, restart, wait
    d stop -t 1 "${n}r" >/dev/null 2>&1; rc=$?
    out=$(d inspect --format '{{.State.Status}} {{.State.ExitCode}}' "${n}r")
    # sh as PID 1 gets no SIGTERM it has no handler for, so the timeout's SIGKILL ends it
    eq "$tag stop (SIGTERM ignored, then SIGKILL)" "0 exited 137" "$rc $out"
    d run -d --name "${n}t" busybox sh -c 'trap "exit 42" TERM; trap "exit 21" USR1; while :; do sleep 0.1; done' >/dev/null 2>&1
    sleep 0.3
    d kill -s USR1 "${n}t" >/dev/null 2>&1
    out=$(d wait "${n}t"); eq "$tag kill -s USR1" 21 "$out"
    d start "${n}t" >/dev/null 2>&1
    out=$(d inspect --format '{{.State.Status}}' "${n}t"); eq "$tag start again" running "$out"
    sleep 0.3
    d stop "${n}t" >/dev/null 2>&1
    out=$(d inspect --format '{{.State.ExitCode}}' "${n}t"); eq "$tag stop (SIGTERM handled)" 42 "$out"
    local p1 p2
    d start "${n}r" >/dev/null 2>&1
    p1=$(d inspect --format '{{.State.Pid}}' "${n}r")
    d restart -t 1 "${n}r" >/dev/null 2>&1
    p2=$(d inspect --format '{{.State.Status}} {{.State.Pid}}' "${n}r")
    if [ "${p2%% *}" = running ] && [ "${p2#* }" != "$p1" ]; then ok "$tag restart"; else fail "$tag restart: before $p1 after $p2"; fi
    d run -d --name "${n}w" busybox sh -c 'sleep 1; exit 9' >/dev/null 2>&1
    out=$(d wait "${n}w" 2>&1); eq "$tag wait" 9 "$out"

    # a second start of a running --rm container changes nothing (it is not a failed start)
    d run -d --rm --name "${n}rm" busybox sleep 300 >/dev/null 2>&1
    d start "${n}rm" >/dev/null 2>&1
    out=$(d inspect --format '{{.State.Status}}' "${n}rm" 2>&1); eq "$tag start of a running --rm container keeps it" running "$out"
    d rm -f "${n}rm" >/dev/null 2>&1

    # start -a
    d create --name "${n}a" busybox sh -c 'echo attached-out; exit 4' >/dev/null 2>&1
    out=$(d start -a "${n}a" 2>&1); rc=$?
    eq "$tag start -a output" attached-out "$out"
    eq "$tag start -a exit code" 4 "$rc"

    # rm, rm -f running, prune
    d rm "${n}w" >/dev/null 2>&1; eq "$tag rm exited" 0 $?
    out=$(d rm "${n}r" 2>&1); rc=$?
    if [ $rc != 0 ]; then ok "$tag rm running refused"; else fail "$tag rm running refused: $out"; fi
    d rm -f "${n}r" >/dev/null 2>&1; eq "$tag rm -f running" 0 $?
    out=$(d ps -a --filter "name=${n}r" -q); eq "$tag rm -f gone" "" "$out"
    out=$(d container prune -f 2>&1); contains "$tag container prune" "Total reclaimed space" "$out"
    out=$(d ps -a --format '{{.Names}}' | grep "^$n" || true); eq "$tag prune removed the exited ones" "" "$out"
    d rm -f $(d ps -aq) >/dev/null 2>&1
}

scenario_cli() {
    echo "# scenario cli"
    local DK
    for DK in "$DOCKER28" "$DOCKER20"; do
        if [ ! -x "$DK" ]; then
            skip "docker client $DK is not installed"
            continue
        fi
        local v
        v=$("$DK" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
        cli_one "docker$v"
    done
}
