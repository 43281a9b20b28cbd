# Scenario: a real stateful application. A Debian bookworm image with redis-server, made
# with debootstrap (cached as a tarball under /var/cache/berth-tests, keyed by a hash of
# the suite and package list, so a machine pays for it once), imported with `docker
# import --change CMD`; redis keeps its data (append-only file, fsync always) on a named
# volume. Keys written through `docker exec redis-cli` survive `rm -f` of the container (a
# new container on the volume has them) and a kill -9 of the daemon while redis runs (the
# container is still running afterwards, the keys are there, redis takes new writes). The
# Python SDK reads the same keys from a third container. redis-cli talks to the server over
# its unix socket: containers have no loopback up yet (the bridge network work brings it).
# Without a reachable mirror it
# prints SKIP (a failure under CI=true). Sourced by run.sh (its daemon, temp dir, helpers
# and cleanup trap). BERTH_TEST_CACHE and BERTH_TEST_MIRROR override the cache directory
# and the mirror.
#
# Restart policies: kill -9 of redis-server (the container's init) in a container with
# --restart always brings it back (a new process) with RestartCount risen and every key;
# after some quick crashes the backoff is seconds long, and a daemon kill -9 while the
# container waits in `restarting` ends, once the daemon is back, with it running, its
# RestartCount kept and the keys intact.

SF_SUITE=bookworm
SF_PKGS="redis-server redis-tools"
SF_CACHE=${BERTH_TEST_CACHE:-/var/cache/berth-tests}
SF_IMAGE=berth-redis:test

# The Debian mirror apt uses here (deb822 .sources first, then sources.list), else Debian's.
sf_mirror() {
    local m=""
    if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
        m=$(awk '
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "'"$SF_SUITE"'" && uri != "") { print uri; exit } }
            /^$/ { uri = "" }' /etc/apt/sources.list.d/*.sources 2>/dev/null)
    fi
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m=$(awk '$1 == "deb" && $0 ~ /[[:space:]]'"$SF_SUITE"'[[:space:]]/ {
                for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp|file):/) { print $i; exit } }' \
            /etc/apt/sources.list)
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

# sf_rootfs_tar: prints the path of the cached rootfs tarball, making it if needed; a
# message on stderr and status 1 when it cannot.
sf_rootfs_tar() {
    local key tar mirror dir
    key=$(printf '%s minbase %s' "$SF_SUITE" "$SF_PKGS" | sha256sum | cut -c1-16)
    tar=$SF_CACHE/debian-$SF_SUITE-redis-$key.tar
    if [ -s "$tar" ]; then
        echo "$tar"
        return 0
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q debootstrap >"$T/apt.log" 2>&1 || {
            echo "debootstrap is not installed and apt-get install debootstrap failed: $(tail -1 "$T/apt.log")" >&2
            return 1
        }
    fi
    mirror=${BERTH_TEST_MIRROR:-$(sf_mirror)}
    dir=$T/debootstrap
    echo "     debootstrap $SF_SUITE from $mirror (once per machine; cached as $tar)" >&2
    if ! timeout 1200 debootstrap --variant=minbase --include="${SF_PKGS// /,}" \
        "$SF_SUITE" "$dir" "$mirror" >"$T/debootstrap.log" 2>&1; then
        echo "debootstrap cannot build $SF_SUITE from $mirror: $(grep -E '^(E|W):' "$T/debootstrap.log" | tail -1)" >&2
        rm -rf "$dir"
        return 1
    fi
    # what apt downloaded is not part of the image
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    mkdir -p "$SF_CACHE"
    if ! tar --numeric-owner --xattrs -C "$dir" -cf "$tar.tmp.$$" . 2>"$T/tar.log"; then
        echo "tar of the rootfs failed: $(tail -1 "$T/tar.log")" >&2
        rm -rf "$dir" "$tar.tmp.$$"
        return 1
    fi
    rm -rf "$dir"
    # renamed whole: a concurrent or killed run never leaves a half tarball under the key
    mv "$tar.tmp.$$" "$tar"
    echo "$tar"
}

# sf_wait_redis DOCKER CONTAINER: waits for redis to answer PING (it replays its AOF first)
sf_wait_redis() {
    local i
    for i in $(seq 1 100); do
        [ "$(timeout 10 "$1" exec "$2" redis-cli -s /run/redis.sock ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.2
    done
    return 1
}

sf_sdk() {
    local PY=python3
    if ! python3 -c 'import docker' 2>/dev/null; then
        if [ ! -x "$T/venv/bin/python3" ]; then
            python3 -m venv "$T/venv" >/dev/null 2>&1 && "$T/venv/bin/pip" install -q docker >/dev/null 2>&1
        fi
        if [ -x "$T/venv/bin/python3" ] && "$T/venv/bin/python3" -c 'import docker' 2>/dev/null; then
            PY=$T/venv/bin/python3
        else
            skip "stateful: the Python docker SDK is not installed and pip install docker failed"
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
    done < <(IMAGE="$SF_IMAGE" timeout 180 "$PY" - 2>&1 <<'EOF'; echo "exit $?"
import os
import time
import docker

c = docker.from_env(version="auto", timeout=60)
def check(name, cond, why=""):
    print(("ok   stateful sdk %s" % name) if cond else ("FAIL stateful sdk %s: %s" % (name, why)))
try:
    ct = c.containers.run(os.environ["IMAGE"], name="redis-sdk", detach=True,
                          volumes={"redisdata": {"bind": "/data", "mode": "rw"}})
    pong = b""
    for _ in range(100):
        code, pong = ct.exec_run(["redis-cli", "-s", "/run/redis.sock", "ping"])
        if pong.strip() == b"PONG":
            break
        time.sleep(0.2)
    check("redis answers", pong.strip() == b"PONG", pong)
    code, out = ct.exec_run(["redis-cli", "-s", "/run/redis.sock", "get", "key42"])
    check("reads a key written through the docker CLI", out.strip() == b"val42", out)
    code, out = ct.exec_run(["redis-cli", "-s", "/run/redis.sock", "set", "sdkkey", "sdkval"])
    check("writes a key", out.strip() == b"OK", out)
    ct.remove(force=True)
except Exception as e:
    check("unexpected error", False, "%s: %s" % (type(e).__name__, e))
EOF
)
}

sf_field() { timeout 30 "$DOCKER28" inspect -f "$2" "$1" 2>/dev/null; }

# sf_kill_init CONTAINER: kill -9 of its init (redis-server); prints the pid killed
sf_kill_init() {
    local pid
    pid=$(sf_field "$1" '{{.State.Pid}}')
    [ -n "$pid" ] && [ "$pid" -gt 0 ] 2>/dev/null || return 1
    kill -KILL "$pid" || return 1
    echo "$pid"
}

# sf_wait_back CONTAINER COUNT OLDPID: waits (bounded, 120 s) until it runs again with
# RestartCount COUNT and another process than OLDPID, and redis answers
sf_wait_back() {
    local i
    for i in $(seq 1 600); do
        if [ "$(sf_field "$1" '{{.State.Running}} {{.RestartCount}}')" = "true $2" ] \
            && [ "$(sf_field "$1" '{{.State.Pid}}')" != "$3" ]; then
            sf_wait_redis "$DOCKER28" "$1"
            return
        fi
        sleep 0.2
    done
    return 1
}

sf_restart() {
    local D=$DOCKER28 out pid n
    timeout 60 "$D" run -d --name redis4 --restart always -v redisdata:/data "$SF_IMAGE" >/dev/null 2>&1
    if ! sf_wait_redis "$D" redis4; then
        fail "stateful: redis does not answer in redis4: $(timeout 10 "$D" logs redis4 2>&1 | tail -3)"
        timeout 30 "$D" rm -f redis4 >/dev/null 2>&1
        return
    fi
    timeout 30 "$D" exec redis4 redis-cli -s /run/redis.sock set before-crash 1 >/dev/null 2>&1
    # kill -9 of redis-server: --restart always brings it back with the data
    if ! pid=$(sf_kill_init redis4); then
        fail "stateful: no pid for redis4"
        timeout 30 "$D" rm -f redis4 >/dev/null 2>&1
        return
    fi
    if sf_wait_back redis4 1 "$pid"; then
        ok "stateful: kill -9 of redis-server with --restart always: running again, RestartCount 1"
    else
        fail "stateful: redis4 after kill -9: $(sf_field redis4 '{{.State.Status}} {{.RestartCount}}') $(timeout 10 "$D" logs redis4 2>&1 | tail -2)"
        timeout 30 "$D" rm -f redis4 >/dev/null 2>&1
        return
    fi
    out=$(timeout 30 "$D" exec redis4 sh -c 'redis-cli -s /run/redis.sock dbsize; redis-cli -s /run/redis.sock get before-crash; redis-cli -s /run/redis.sock get key42' 2>&1 | tr '\n' ,)
    eq "stateful: keys intact after the restart by policy" "104,1,val42," "$out"

    # quick crashes double the delay (100 ms, 200 ms, ...): crash 6 waits 3.2 s
    for n in 2 3 4 5; do
        pid=$(sf_kill_init redis4) && sf_wait_back redis4 "$n" "$pid" || break
    done
    eq "stateful: RestartCount after 5 kills of redis-server" "5" "$(sf_field redis4 '{{.RestartCount}}')"
    timeout 30 "$D" exec redis4 redis-cli -s /run/redis.sock set between-restarts 1 >/dev/null 2>&1
    pid=$(sf_kill_init redis4)
    # the daemon is killed while the container waits for its next start
    for n in $(seq 1 50); do
        [ "$(sf_field redis4 '{{.State.Status}}')" = restarting ] && break
        sleep 0.05
    done
    eq "stateful: redis4 is restarting (in its backoff) after the 6th kill" "restarting" "$(sf_field redis4 '{{.State.Status}}')"
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
    if ! start_daemon; then
        fail "stateful: the daemon does not start after kill -9 (redis4 restarting)"
        return
    fi
    if sf_wait_back redis4 6 "$pid"; then
        ok "stateful: after a daemon kill -9 during the backoff, redis4 runs again (RestartCount 6)"
    else
        fail "stateful: redis4 after the daemon's kill -9 in its backoff: $(sf_field redis4 '{{.State.Status}} {{.RestartCount}}')"
    fi
    out=$(timeout 30 "$D" exec redis4 sh -c 'redis-cli -s /run/redis.sock dbsize; redis-cli -s /run/redis.sock get between-restarts; redis-cli -s /run/redis.sock get key7; redis-cli -s /run/redis.sock set after-restarts 1' 2>&1 | tr '\n' ,)
    eq "stateful: nothing lost across the crashes and the daemon's kill -9" "105,1,val7,OK," "$out"
    out=$(timeout 60 "$D" rm -f redis4 2>&1)
    eq "stateful: rm -f of the restarted redis" "redis4" "$out"
}

scenario_stateful() {
    echo "# scenario stateful"
    local D=$DOCKER28 tar out
    if ! tar=$(sf_rootfs_tar 2>"$T/sf.err"); then
        skip "stateful: $(tail -1 "$T/sf.err")"
        return
    fi
    out=$(timeout 600 "$D" import \
        --change 'CMD ["redis-server", "--dir", "/data", "--appendonly", "yes", "--appendfsync", "always", "--unixsocket", "/run/redis.sock", "--unixsocketperm", "700"]' \
        "$tar" "$SF_IMAGE" 2>&1)
    case "$out" in
        sha256:*) ok "stateful: docker import of the debootstrapped rootfs with --change CMD" ;;
        *) fail "stateful: docker import: $out"; return ;;
    esac

    # data on a named volume outlives rm -f
    timeout 30 "$D" volume create redisdata >/dev/null 2>&1
    timeout 60 "$D" run -d --name redis1 -v redisdata:/data "$SF_IMAGE" >/dev/null 2>&1
    if ! sf_wait_redis "$D" redis1; then
        fail "stateful: redis does not answer in redis1: $(timeout 10 "$D" logs redis1 2>&1 | tail -3)"
        timeout 30 "$D" rm -f redis1 >/dev/null 2>&1
        return
    fi
    ok "stateful: redis-server runs from the imported image"
    out=$(timeout 60 "$D" exec redis1 sh -c \
        'for i in $(seq 1 100); do redis-cli -s /run/redis.sock set key$i val$i >/dev/null || exit 1; done; redis-cli -s /run/redis.sock dbsize' 2>&1)
    eq "stateful: 100 keys written with redis-cli through docker exec" "100" "$out"
    out=$(timeout 30 "$D" rm -f redis1 2>&1)
    eq "stateful: rm -f of the running redis" "redis1" "$out"
    timeout 60 "$D" run -d --name redis2 -v redisdata:/data "$SF_IMAGE" >/dev/null 2>&1
    if ! sf_wait_redis "$D" redis2; then
        fail "stateful: redis does not answer in redis2: $(timeout 10 "$D" logs redis2 2>&1 | tail -3)"
        timeout 30 "$D" rm -f redis2 >/dev/null 2>&1
        return
    fi
    out=$(timeout 30 "$D" exec redis2 sh -c 'redis-cli -s /run/redis.sock dbsize; redis-cli -s /run/redis.sock get key42' 2>&1 | tr '\n' ,)
    eq "stateful: a new container on the volume has the keys after rm -f" "100,val42," "$out"

    # kill -9 of the daemon while redis runs: afterwards it is still running, same process,
    # keys intact, writes accepted
    local pid_before pid_after
    pid_before=$(timeout 30 "$D" inspect -f '{{.State.Pid}}' redis2 2>&1)
    timeout 30 "$D" exec redis2 redis-cli -s /run/redis.sock set during-kill yes >/dev/null 2>&1
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
    if ! start_daemon; then
        fail "stateful: the daemon does not start after kill -9"
        return
    fi
    out=$(timeout 30 "$D" inspect -f '{{.State.Status}} {{.State.Running}}' redis2 2>&1)
    eq "stateful: redis2 is running after the daemon's kill -9 and restart" "running true" "$out"
    pid_after=$(timeout 30 "$D" inspect -f '{{.State.Pid}}' redis2 2>&1)
    eq "stateful: ... the same redis process (never restarted)" "$pid_before" "$pid_after"
    out=$(timeout 30 "$D" exec redis2 sh -c \
        'redis-cli -s /run/redis.sock dbsize; redis-cli -s /run/redis.sock get key7; redis-cli -s /run/redis.sock get during-kill; redis-cli -s /run/redis.sock set after-kill yes' 2>&1 | tr '\n' ,)
    eq "stateful: keys intact and writes accepted after the daemon's kill -9" "101,val7,yes,OK," "$out"
    # redis stopped cleanly (SIGTERM: it writes and exits) keeps what it had too
    out=$(timeout 60 "$D" stop redis2 2>&1)
    eq "stateful: docker stop of redis" "redis2" "$out"
    out=$(timeout 30 "$D" inspect -f '{{.State.ExitCode}}' redis2 2>&1)
    eq "stateful: redis exited 0 on SIGTERM" "0" "$out"
    timeout 30 "$D" rm redis2 >/dev/null 2>&1

    sf_sdk

    timeout 60 "$D" run -d --name redis3 -v redisdata:/data "$SF_IMAGE" >/dev/null 2>&1
    if sf_wait_redis "$D" redis3; then
        out=$(timeout 30 "$D" exec redis3 sh -c 'redis-cli -s /run/redis.sock dbsize; redis-cli -s /run/redis.sock get after-kill' 2>&1 | tr '\n' ,)
        eq "stateful: every key after stop, the SDK's container and a fourth start" "103,yes," "$out"
    else
        fail "stateful: redis does not answer in redis3"
    fi
    timeout 30 "$D" rm -f redis3 >/dev/null 2>&1

    sf_restart

    timeout 30 "$D" volume rm redisdata >/dev/null 2>&1
    timeout 60 "$D" rmi "$SF_IMAGE" >/dev/null 2>&1
}
