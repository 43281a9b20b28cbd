# Scenario: docker-compose against berth (issues 14 and 15). Debian's docker-compose
# (compose v1, Python, docker-py at DOCKER_HOST) is installed with apt-get if missing; a
# compose v2 (`docker compose` plugin or a `docker-compose` v2 binary) is used when that is
# what is there. The project: `db`, a busybox httpd serving a named volume, healthy only
# some seconds after it starts, `restart: always`; `web`, which `depends_on: db: condition:
# service_healthy`, fetches a file from `http://db/` by the service name on the project
# network at its start and serves it on a published port. Checked: `up -d` starts web only
# after db's health_status: healthy event (events' timeNano), curl on 127.0.0.1 gets db's
# file through web (so names resolve on the project network), `ps`, `logs`, `exec`, data on
# the volume outlives `down` + `up`, `restart: always` brings db back after a kill -9 of
# its process, and `down -v` leaves no container, network or volume of the project.
# Sourced by run.sh (its daemon, temp dir, helpers and cleanup trap).

# cp_compose: sets CP_CMD (an array) to the compose to use, or returns 1 with a reason on
# stderr.
cp_compose() {
    if "$DOCKER28" compose version >/dev/null 2>&1; then
        CP_CMD=("$DOCKER28" compose)
        return 0
    fi
    if ! command -v docker-compose >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q docker-compose >"$T/apt-compose.log" 2>&1 || {
            echo "docker-compose is not installed and apt-get install docker-compose failed: $(tail -1 "$T/apt-compose.log")" >&2
            return 1
        }
    fi
    CP_CMD=(docker-compose)
}

# cp_wait SECONDS CMD...: retries CMD every 0.2 s until it succeeds; a bound against a hang.
cp_wait() {
    local n=$(($1 * 5)) i
    shift
    for i in $(seq 1 "$n"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

# cp_free_port: a TCP port nothing listens on now
cp_free_port() {
    local p
    for p in $(shuf -i 20000-40000 -n 50); do
        if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# what of project $1 the daemon still has: containers, networks, volumes (one a line)
cp_leftovers() {
    local label=com.docker.compose.project=$1
    timeout 30 "$DOCKER28" ps -aq --filter "label=$label" 2>&1
    timeout 30 "$DOCKER28" network ls -q --filter "label=$label" 2>&1
    timeout 30 "$DOCKER28" volume ls -q --filter "label=$label" 2>&1
    timeout 30 "$DOCKER28" network ls --format '{{.Name}}' 2>&1 | grep -- "^$1_" || true
    timeout 30 "$DOCKER28" volume ls --format '{{.Name}}' 2>&1 | grep -- "^$1_" || true
}

scenario_compose() {
    echo "# scenario compose"
    local CP_CMD
    if ! cp_compose 2>"$T/cp.err"; then
        skip "compose: $(tail -1 "$T/cp.err")"
        return
    fi
    local v P=bc$$ dir=$T/compose port out since until ev t_healthy t_web
    v=$("${CP_CMD[@]}" version --short 2>/dev/null || "${CP_CMD[@]}" version 2>&1 | head -1)
    echo "     ${CP_CMD[*]} $v"
    if ! port=$(cp_free_port); then
        fail "compose: no free TCP port between 20000 and 40000"
        return
    fi
    mkdir -p "$dir"
    # db: ready (for its health check) 4 s after it starts; a first start seeds the volume.
    # web: fetches db's file by the service name once, at its start, then serves it.
    cat >"$dir/docker-compose.yml" <<EOF
version: "2.4"
services:
  db:
    image: busybox:latest
    command: ["sh", "-c", "rm -f /tmp/ready; [ -f /data/index.html ] || echo served-from-db > /data/index.html; sleep 4; touch /tmp/ready; exec httpd -f -p 80 -h /data"]
    volumes:
      - dbdata:/data
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 3s
      retries: 60
    restart: always
  web:
    image: busybox:latest
    command: ["sh", "-c", "mkdir -p /www && wget -q -O /www/index.html http://db/index.html && echo fetched from db && exec httpd -f -p 8080 -h /www"]
    depends_on:
      db:
        condition: service_healthy
    ports:
      - "127.0.0.1:$port:8080"
volumes:
  dbdata: {}
EOF
    local C=("${CP_CMD[@]}" -p "$P" -f "$dir/docker-compose.yml")

    since=$(date +%s)
    out=$(cd "$dir" && timeout 180 "${C[@]}" up -d 2>&1)
    if [ $? = 0 ]; then
        ok "compose: up -d"
    else
        fail "compose: up -d: $(echo "$out" | tail -5)"
    fi
    out=$(timeout 30 "${C[@]}" ps 2>&1)
    contains "compose: ps lists db" "${P}_db_1" "$out"
    contains "compose: ps lists web" "${P}_web_1" "$out"
    contains "compose: ps shows db healthy" "healthy" "$out"
    contains "compose: ps shows the published port" "127.0.0.1:$port->8080/tcp" "$out"

    # order: web's start event comes after db's health_status: healthy (the daemon's clock)
    until=$(($(date +%s) + 1))
    ev=$(timeout 30 "$DOCKER28" events --since "$since" --until "$until" \
        --filter "label=com.docker.compose.project=$P" --filter type=container \
        --format '{{.TimeNano}} {{.Action}} {{index .Actor.Attributes "com.docker.compose.service"}}' 2>&1)
    t_healthy=$(echo "$ev" | awk '$2 == "health_status:" && $3 == "healthy" && $4 == "db" { print $1; exit }')
    t_web=$(echo "$ev" | awk '$2 == "start" && $3 == "web" { print $1; exit }')
    if [ -n "$t_healthy" ] && [ -n "$t_web" ] && [ "$t_web" -gt "$t_healthy" ]; then
        ok "compose: web started after db's health_status: healthy"
    else
        fail "compose: order of db healthy ($t_healthy) and web start ($t_web): $ev"
    fi

    # web got db's file by the name db on the project network; its port is published
    out=$(curl -s --max-time 10 "http://127.0.0.1:$port/index.html" 2>&1)
    eq "compose: curl 127.0.0.1:$port gets db's file through web" "served-from-db" "$out"
    out=$(timeout 30 "${C[@]}" logs web 2>&1)
    contains "compose: logs web" "fetched from db" "$out"
    local dbip
    dbip=$(timeout 30 "$DOCKER28" inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${P}_db_1" 2>&1)
    out=$(timeout 30 "${C[@]}" exec -T web nslookup db 2>&1)
    if [ -n "$dbip" ]; then
        contains "compose: exec: db resolves to db's address ($dbip) in web" "Address: $dbip" "$out"
    else
        fail "compose: db has no address on the project network"
    fi
    out=$(timeout 30 "$DOCKER28" network ls --format '{{.Name}}' 2>&1)
    contains "compose: the project network exists" "${P}_default" "$out"
    out=$(timeout 30 "${C[@]}" exec -T db cat /data/index.html 2>&1)
    eq "compose: exec in db reads its volume" "served-from-db" "$out"

    # restart: always: a kill -9 of db's process brings it back
    local pid rc
    pid=$(timeout 30 "$DOCKER28" inspect -f '{{.State.Pid}}' "${P}_db_1" 2>&1)
    rc=$(timeout 30 "$DOCKER28" inspect -f '{{.RestartCount}}' "${P}_db_1" 2>&1)
    if [ -n "$pid" ] && [ "$pid" -gt 0 ] 2>/dev/null; then
        kill -KILL "$pid"
        if cp_wait 60 sh -c "[ \"\$('$DOCKER28' inspect -f '{{.State.Running}} {{.RestartCount}}' ${P}_db_1)\" = 'true $((rc + 1))' ]"; then
            ok "compose: restart: always brings db back after kill -9 (RestartCount $((rc + 1)))"
        else
            fail "compose: db after kill -9: $(timeout 10 "$DOCKER28" inspect -f '{{.State.Status}} {{.RestartCount}}' "${P}_db_1" 2>&1)"
        fi
    else
        fail "compose: db's pid: $pid"
    fi

    # the volume outlives down (without -v) and up
    timeout 30 "${C[@]}" exec -T db sh -c 'echo kept > /data/kept' >/dev/null 2>&1
    out=$(timeout 120 "${C[@]}" down 2>&1)
    if [ $? = 0 ]; then ok "compose: down"; else fail "compose: down: $(echo "$out" | tail -3)"; fi
    eq "compose: no container of the project after down" "" \
        "$(timeout 30 "$DOCKER28" ps -aq --filter "label=com.docker.compose.project=$P" 2>&1)"
    out=$(timeout 30 "$DOCKER28" volume ls -q 2>&1)
    contains "compose: the volume stays after down" "${P}_dbdata" "$out"
    out=$(cd "$dir" && timeout 180 "${C[@]}" up -d 2>&1)
    if [ $? = 0 ]; then ok "compose: up -d again"; else fail "compose: up -d again: $(echo "$out" | tail -5)"; fi
    out=$(timeout 30 "${C[@]}" exec -T db cat /data/kept 2>&1)
    eq "compose: data on the volume survives down and up" "kept" "$out"
    out=$(curl -s --max-time 10 "http://127.0.0.1:$port/index.html" 2>&1)
    eq "compose: web serves db's file again after up" "served-from-db" "$out"

    out=$(timeout 120 "${C[@]}" down -v 2>&1)
    if [ $? = 0 ]; then ok "compose: down -v"; else fail "compose: down -v: $(echo "$out" | tail -3)"; fi
    eq "compose: nothing of the project left after down -v (containers, networks, volumes)" "" \
        "$(cp_leftovers "$P")"
    # whatever a failure above left, so the next scenarios start clean
    timeout 60 "${C[@]}" down -v >/dev/null 2>&1
}
