# Scenario: events through the docker CLIs (28 on PATH, 20.10 at /usr/bin/docker when
# installed), berth's own CLI and the Python docker SDK: a container's life replayed with
# --since/--until (unix, RFC 3339, relative), Docker's names and attributes (exitCode,
# labels, name, image), the default line, {{json .}}, filters (container, type, event,
# label, image, volume), a live stream ended by --until, and the history kept across a
# kill -9 of the daemon. Sourced by run.sh (its daemon, temp dir, helpers, cleanup trap).

now_unix() { date +%s.%N; }

# ev_cli NAME DOCKER
ev_cli() {
    local n=$1 D=$2 out s u c="ev$1"
    s=$(now_unix)
    timeout 60 "$D" run --name "$c" -l tier=front -l team=a busybox sh -c 'exit 3' >/dev/null 2>&1
    timeout 30 "$D" rm "$c" >/dev/null 2>&1
    timeout 30 "$D" volume create "evvol$n" >/dev/null 2>&1
    timeout 30 "$D" volume rm "evvol$n" >/dev/null 2>&1
    u=$(now_unix)
    echo "$s $u" >"$T/ev-range-$n"

    out=$(timeout 30 "$D" events --since "$s" --until "$u" --filter "container=$c" \
        --format '{{.Type}} {{.Action}}' 2>&1 | tr '\n' ,)
    eq "events $n: a run's life replayed (--since/--until, --filter container=)" \
        "container create,container attach,container start,container die,container destroy," "$out"
    out=$(timeout 30 "$D" events --since "$s" --until "$u" --filter "container=$c" --filter event=die 2>&1)
    if echo "$out" | grep -Eq "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{9}(Z|[+-][0-9]{2}:[0-9]{2}) container die [0-9a-f]{64} \(execDuration=[0-9]+, exitCode=3, image=busybox, name=$c, team=a, tier=front\)$"; then
        ok "events $n: docker's default line with execDuration, exitCode, image, name and labels"
    else
        fail "events $n: default line: [$out]"
    fi
    out=$(timeout 30 "$D" events --since "$s" --until "$u" --filter "container=$c" --filter event=die \
        --format '{{json .}}' 2>&1)
    contains "events $n: {{json .}} has the Actor's exitCode" '"exitCode":"3"' "$out"
    contains "events $n: {{json .}} has the deprecated status" '"status":"die"' "$out"
    contains "events $n: {{json .}} has the deprecated from" '"from":"busybox"' "$out"
    contains "events $n: {{json .}} has scope local" '"scope":"local"' "$out"
    out=$(timeout 30 "$D" events --since "$s" --until "$u" --filter type=volume \
        --format '{{.Action}} {{.Actor.ID}}' 2>&1 | tr '\n' ,)
    eq "events $n: --filter type=volume" "create evvol$n,destroy evvol$n," "$out"
    out=$(timeout 30 "$D" events --since "$s" --until "$u" --filter label=tier=front \
        --filter event=start --format '{{.Actor.Attributes.name}}' 2>&1 | tr '\n' ,)
    eq "events $n: --filter label=tier=front" "$c," "$out"
    out=$(timeout 30 "$D" events --since "$s" --until "$u" --filter image=busybox \
        --filter event=destroy --format '{{.Actor.Attributes.name}}' 2>&1 | tr '\n' ,)
    eq "events $n: --filter image=busybox" "$c," "$out"
    local rs ru
    rs=$(date -u -d "@$s" +%Y-%m-%dT%H:%M:%S.%NZ)
    ru=$(date -u -d "@$u" +%Y-%m-%dT%H:%M:%S.%NZ)
    out=$(timeout 30 "$D" events --since "$rs" --until "$ru" --filter "container=$c" \
        --format '{{.Action}}' 2>&1 | tr '\n' ,)
    eq "events $n: RFC 3339 --since/--until" "create,attach,start,die,destroy," "$out"
    out=$(timeout 30 "$D" events --since 10m --until "$u" --filter "container=$c" \
        --filter event=create --format '{{.Action}}' 2>&1 | tr '\n' ,)
    eq "events $n: --since 10m" "create," "$out"

    # live: --since now replays nothing older and catches what follows; --until ends it
    local pid f="$T/ev-live-$n"
    timeout 30 "$D" events --since "$(now_unix)" --until "$(date -d '+6 seconds' +%s)" \
        --filter "container=${c}live" --format '{{.Action}} {{.Actor.Attributes.name}}' >"$f" 2>&1 &
    pid=$!
    timeout 30 "$D" create --name "${c}live" busybox true >/dev/null 2>&1
    timeout 30 "$D" rm "${c}live" >/dev/null 2>&1
    wait "$pid"
    eq "events $n: a live stream ends at --until" "0" "$?"
    eq "events $n: ... with what happened meanwhile" "create ${c}live,destroy ${c}live," "$(tr '\n' , <"$f")"

    out=$(timeout 30 "$D" events --since yesterday --until 1 2>&1)
    contains "events $n: a bad --since is refused" "failed to parse value as time or duration" "$out"
}

ev_sdk() {
    local PY=python3
    if ! python3 -c 'import docker' 2>/dev/null; then
        if [ ! -x "$T/venv/bin/python3" ]; then
            python3 -m venv "$T/venv" >/dev/null 2>&1 && "$T/venv/bin/pip" install -q docker >/dev/null 2>&1
        fi
        if [ -x "$T/venv/bin/python3" ] && "$T/venv/bin/python3" -c 'import docker' 2>/dev/null; then
            PY=$T/venv/bin/python3
        else
            skip "events: the Python docker SDK is not installed and pip install docker failed"
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
    done < <(timeout 120 "$PY" - 2>&1 <<'EOF'; echo "exit $?"
import datetime
import threading
import docker

c = docker.from_env(version="auto", timeout=60)
def check(name, cond, why=""):
    print(("ok   events sdk %s" % name) if cond else ("FAIL events sdk %s: %s" % (name, why)))
try:
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    ct = c.containers.run("busybox", ["sh", "-c", "exit 4"], name="evsdk", labels={"who": "sdk"}, detach=True)
    ct.wait()
    ct.remove()
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
    evs = list(c.events(decode=True, since=since, until=until, filters={"container": "evsdk"}))
    acts = [e["Action"] for e in evs]
    check("since/until replay", acts == ["create", "start", "die", "destroy"], acts)
    die = [e for e in evs if e["Action"] == "die"]
    check("die carries exitCode and labels",
          die and die[0]["Actor"]["Attributes"].get("exitCode") == "4"
          and die[0]["Actor"]["Attributes"].get("who") == "sdk", die)
    check("deprecated fields", die and die[0].get("status") == "die" and die[0].get("id") == ct.id, die)
    evs = list(c.events(decode=True, since=since, until=until, filters={"event": "die", "label": "who=sdk"}))
    check("filters event and label", [e["Actor"]["Attributes"]["name"] for e in evs] == ["evsdk"], evs)

    # live: the stream, started first, sees a container made afterwards
    got = []
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    stream = c.events(decode=True, since=start, filters={"container": "evsdklive"})
    def read():
        for e in stream:
            got.append(e["Action"])
            if e["Action"] == "destroy":
                break
    t = threading.Thread(target=read, daemon=True)
    t.start()
    c.containers.create("busybox", "true", name="evsdklive").remove()
    t.join(30)
    stream.close()
    check("live stream", got == ["create", "destroy"], got)
except Exception as e:
    check("unexpected error", False, "%s: %s" % (type(e).__name__, e))
EOF
)
}

scenario_events() {
    echo "# scenario events"
    ev_cli 28 "$DOCKER28"
    if [ -x "$DOCKER20" ] && "$DOCKER20" --version 2>/dev/null | grep -q ' 20\.10'; then
        ev_cli 20 "$DOCKER20"
    else
        skip "events: Debian's docker 20.10 client is not installed at $DOCKER20"
    fi
    printf '#!/bin/sh\nexec "%s" -H "unix://%s" "$@"\n' "$BERTH" "$SOCK" >"$T/berth-cli"
    chmod +x "$T/berth-cli"
    ev_cli berth "$T/berth-cli"
    ev_sdk

    # the history outlives a kill -9 of the daemon
    local s u out
    read -r s u <"$T/ev-range-28"
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
    if ! start_daemon; then
        fail "events: the daemon does not start after kill -9"
        return
    fi
    out=$(timeout 30 "$DOCKER28" events --since "$s" --until "$u" --filter container=ev28 \
        --format '{{.Action}}' 2>&1 | tr '\n' ,)
    eq "events: the history is replayed after kill -9 and restart" "create,attach,start,die,destroy," "$out"
}
