# Scenario: restart policies and health checks through the docker CLIs and the Python SDK:
# `run --restart`, `update --restart`, RestartCount after kill -9 of the container's init,
# `stop` suspending the policy, a daemon kill -9 while a container waits for its restart,
# `--health-cmd` with its status in `ps` and `inspect`, the health= filter, a probe that
# hangs. Sourced by run.sh, which starts the daemon and cleans up in its trap:
#   ONLY=selfheal tests/engine/run.sh /path/to/berth   (a step of scripts/test.sh)

# sh_wait SECONDS CMD...: retries CMD every 0.1 s until it succeeds; a bound against a hang.
sh_wait() {
    local n=$(($1 * 10)) i
    shift
    for i in $(seq 1 "$n"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
sh_state_is() { [ "$(timeout 10 "$DOCKER28" inspect -f "$2" "$1" 2>/dev/null)" = "$3" ]; }

scenario_selfheal() {
    echo "# scenario selfheal"
    local d out pid pid2 started
    for d in "$DOCKER28" "$DOCKER20"; do
        [ -x "$d" ] || { skip "selfheal: no $d"; continue; }
        local v
        v=$("$d" version -f '{{.Client.Version}}' 2>/dev/null)
        # bad input: nothing created
        out=$(timeout 30 "$d" run -d --name shbad --restart bogus busybox true 2>&1)
        contains "selfheal ($v): --restart bogus refused" "bogus" "$out"
        eq "selfheal ($v): nothing created for a bad policy" "" "$(timeout 10 "$d" ps -aq --filter name=shbad)"

        # on-failure:2: two restarts, then exited with RestartCount 2
        timeout 30 "$d" run -d --name shfail --restart on-failure:2 busybox sh -c 'echo ran; exit 3' >/dev/null
        if sh_wait 60 sh_state_is shfail '{{.State.Status}} {{.RestartCount}}' "exited 2"; then
            ok "selfheal ($v): on-failure:2 restarts twice then stays exited"
        else
            fail "selfheal ($v): on-failure:2: $("$d" inspect -f '{{.State.Status}} {{.RestartCount}}' shfail)"
        fi
        eq "selfheal ($v): the log of every run is kept" 3 "$(timeout 10 "$d" logs shfail 2>&1 | grep -c ran)"

        # always: kill -9 of the init from outside brings it back, with a new StartedAt
        timeout 30 "$d" run -d --name shalways --restart always busybox sh -c 'echo up; exec sleep 1000' >/dev/null
        sh_wait 30 sh_state_is shalways '{{.State.Running}}' true
        # killed only once the first run has logged, or its line would never be there
        sh_wait 30 sh -c "'$d' logs shalways 2>&1 | grep -q up"
        pid=$(timeout 10 "$d" inspect -f '{{.State.Pid}}' shalways)
        started=$(timeout 10 "$d" inspect -f '{{.State.StartedAt}}' shalways)
        kill -KILL "$pid"
        if sh_wait 60 sh_state_is shalways '{{.State.Running}} {{.RestartCount}}' "true 1"; then
            ok "selfheal ($v): always restarts after kill -9 (RestartCount 1)"
        else
            fail "selfheal ($v): always after kill -9: $("$d" inspect -f '{{.State.Status}} {{.RestartCount}}' shalways)"
        fi
        pid2=$(timeout 10 "$d" inspect -f '{{.State.Pid}} {{.State.StartedAt}}' shalways)
        [ "$pid2" != "$pid $started" ] && ok "selfheal ($v): new pid and StartedAt" || fail "selfheal ($v): same pid/StartedAt"
        sh_wait 30 sh -c "[ \$('$d' logs shalways 2>&1 | grep -c up) = 2 ]" \
            && ok "selfheal ($v): the log is appended across the restart" \
            || fail "selfheal ($v): log: $("$d" logs shalways 2>&1 | tr '\n' ' ')"
        out=$(timeout 10 "$d" ps --filter name=shalways --format '{{.Status}}')
        contains "selfheal ($v): ps shows it Up" "Up" "$out"
        # stop suspends the policy
        timeout 30 "$d" stop -t 1 shalways >/dev/null
        sleep 1
        eq "selfheal ($v): stop suspends the policy" "exited 1" \
            "$(timeout 10 "$d" inspect -f '{{.State.Status}} {{.RestartCount}}' shalways)"

        # update --restart on an existing container
        timeout 30 "$d" run -d --name shupd busybox sleep 1000 >/dev/null
        out=$(timeout 30 "$d" update --restart unless-stopped shupd 2>&1)
        eq "selfheal ($v): update --restart" "shupd" "$out"
        eq "selfheal ($v): inspect shows the new policy" "unless-stopped" \
            "$(timeout 10 "$d" inspect -f '{{.HostConfig.RestartPolicy.Name}}' shupd)"
        kill -KILL "$(timeout 10 "$d" inspect -f '{{.State.Pid}}' shupd)"
        sh_wait 60 sh_state_is shupd '{{.State.Running}} {{.RestartCount}}' "true 1" \
            && ok "selfheal ($v): the updated policy restarts it" \
            || fail "selfheal ($v): updated policy: $("$d" inspect -f '{{.State.Status}} {{.RestartCount}}' shupd)"
        out=$(timeout 30 "$d" update --restart bogus shupd 2>&1)
        contains "selfheal ($v): update --restart bogus refused" "bogus" "$out"

        # health: healthy, then unhealthy when the probe's file goes; ps and inspect show it
        timeout 30 "$d" run -d --name shhealth --health-cmd 'cat /tmp/ok' --health-interval 1s \
            --health-retries 2 busybox sh -c 'touch /tmp/ok; exec sleep 1000' >/dev/null
        sh_wait 60 sh_state_is shhealth '{{.State.Health.Status}}' healthy \
            && ok "selfheal ($v): --health-cmd makes it healthy" \
            || fail "selfheal ($v): health: $("$d" inspect -f '{{json .State.Health}}' shhealth)"
        out=$(timeout 10 "$d" ps --filter name=shhealth --format '{{.Status}}')
        contains "selfheal ($v): ps shows (healthy)" "(healthy)" "$out"
        eq "selfheal ($v): ps --filter health=healthy" shhealth \
            "$(timeout 10 "$d" ps --filter health=healthy --format '{{.Names}}' | grep shhealth)"
        timeout 30 "$d" exec shhealth rm /tmp/ok
        sh_wait 60 sh_state_is shhealth '{{.State.Health.Status}}' unhealthy \
            && ok "selfheal ($v): unhealthy once the probe fails twice" \
            || fail "selfheal ($v): health: $("$d" inspect -f '{{json .State.Health}}' shhealth)"
        out=$(timeout 10 "$d" ps --filter name=shhealth --format '{{.Status}}')
        contains "selfheal ($v): ps shows (unhealthy)" "(unhealthy)" "$out"

        # a probe that hangs times out
        timeout 30 "$d" run -d --name shhang --health-cmd 'sleep 600' --health-interval 1s \
            --health-timeout 1s --health-retries 1 busybox sleep 1000 >/dev/null
        sh_wait 60 sh_state_is shhang '{{.State.Health.Status}}' unhealthy \
            && ok "selfheal ($v): a hanging probe times out: unhealthy" \
            || fail "selfheal ($v): hang: $("$d" inspect -f '{{json .State.Health}}' shhang)"
        out=$(timeout 10 "$d" inspect -f '{{(index .State.Health.Log 0).ExitCode}} {{(index .State.Health.Log 0).Output}}' shhang)
        contains "selfheal ($v): the timed-out probe's result" "-1 Health check exceeded timeout" "$out"
        out=$(timeout 30 "$d" run -d --name shnone --no-healthcheck busybox sleep 1000 >/dev/null 2>&1 \
            && timeout 10 "$d" inspect -f '{{.State.Health}}' shnone)
        eq "selfheal ($v): --no-healthcheck" "<nil>" "$out"

        timeout 60 "$d" rm -f shfail shalways shupd shhealth shhang shnone >/dev/null 2>&1
    done

    # a daemon killed with SIGKILL while a container waits for its restart: the new daemon
    # starts it; an unless-stopped container the user stopped stays stopped.
    timeout 30 "$DOCKER28" run -d --name shflaky --restart always busybox \
        sh -c 'c=$(cat /count 2>/dev/null || echo 0); c=$((c+1)); echo $c > /count; [ $c -gt 6 ] && exec sleep 1000; exit 1' >/dev/null
    timeout 30 "$DOCKER28" run -d --name shunless --restart unless-stopped busybox sleep 1000 >/dev/null
    timeout 30 "$DOCKER28" stop -t 1 shunless >/dev/null
    if sh_wait 60 sh_state_is shflaky '{{.State.Restarting}} {{.RestartCount}}' "true 6"; then
        kill -KILL "$DAEMON_PID"
        wait "$DAEMON_PID" 2>/dev/null
        DAEMON_PID=
        if ! start_daemon; then
            fail "selfheal: the daemon does not start again"
            return
        fi
        sh_wait 60 sh_state_is shflaky '{{.State.Status}} {{.RestartCount}}' "running 6" \
            && ok "selfheal: a container waiting for its restart when the daemon died runs after it is back" \
            || fail "selfheal: after the daemon's kill -9: $("$DOCKER28" inspect -f '{{.State.Status}} {{.RestartCount}}' shflaky)"
        sleep 1
        eq "selfheal: unless-stopped stopped by the user stays stopped across the daemon's restart" exited \
            "$(timeout 10 "$DOCKER28" inspect -f '{{.State.Status}}' shunless)"
    else
        fail "selfheal: shflaky never waited for its sixth restart: $("$DOCKER28" inspect -f '{{.State.Status}} {{.RestartCount}}' shflaky)"
    fi
    timeout 60 "$DOCKER28" rm -f shflaky shunless >/dev/null 2>&1

    # the Python SDK
    local py=python3
    if ! python3 -c 'import docker' 2>/dev/null; then
        if [ -x "$T/venv/bin/python3" ] || { python3 -m venv "$T/venv" >/dev/null 2>&1 \
            && "$T/venv/bin/pip" install -q docker >/dev/null 2>&1; }; then
            py=$T/venv/bin/python3
        else
            skip "selfheal: the Python docker SDK is not installed and pip install docker failed"
            return
        fi
    fi
    local line
    while IFS= read -r line; do
        case "$line" in
            "ok   "*) ok "${line#ok   }" ;;
            "FAIL "*) fail "${line#FAIL }" ;;
            *) echo "     $line" ;;
        esac
    done < <(timeout 180 "$py" "$HERE/selfheal_sdk.py" 2>&1; echo "exit $?")
}
