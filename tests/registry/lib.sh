# Shared by the registry scripts: start/stop Debian's docker-registry on 127.0.0.1.
# Source it; it defines start_registry DIR PORT and stop_registry, free_port.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_registry STORAGE_DIR PORT — runs a registry with its storage in STORAGE_DIR; sets
# REGISTRY_PID. Waits until it answers.
start_registry() {
    mkdir -p "$1"
    cat > "$1/config.yml" <<CFG
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $1/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$2
  secret: berth-test-secret
CFG
    /usr/bin/docker-registry serve "$1/config.yml" >"$1/registry.log" 2>&1 &
    REGISTRY_PID=$!
    i=0
    until curl -fsS "http://127.0.0.1:$2/v2/" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 200 ]; then
            echo "registry on 127.0.0.1:$2 did not start:" >&2
            cat "$1/registry.log" >&2
            return 1
        fi
        sleep 0.05
    done
}

stop_registry() {
    if [ -n "${REGISTRY_PID:-}" ]; then
        kill "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
        REGISTRY_PID=
    fi
}

# start_berth_daemon BERTH DIR — a private `berth daemon` with its socket, data root, exec
# root and pidfile under DIR; sets BERTH_DAEMON_PID and exports BERTH_HOST so that berth's
# commands are its clients. Waits until it answers.
. "$(dirname "${BASH_SOURCE[0]}")/../support/netclean.sh"
start_berth_daemon() {
    mkdir -p "$2"
    BERTH_DAEMON_DATA=$2/data
    env -u BERTH_HOST -u BERTH_DATA_ROOT "$1" daemon -H "unix://$2/s.sock" \
        --data-root "$2/data" --exec-root "$2/run" --pidfile "$2/pid" >"$2/daemon.log" 2>&1 &
    BERTH_DAEMON_PID=$!
    export BERTH_HOST="unix://$2/s.sock"
    unset BERTH_DATA_ROOT
    i=0
    until "$1" version >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 200 ] || ! kill -0 "$BERTH_DAEMON_PID" 2>/dev/null; then
            echo "berth daemon in $2 did not start:" >&2
            tail -20 "$2/daemon.log" >&2
            return 1
        fi
        sleep 0.05
    done
}

stop_berth_daemon() {
    if [ -n "${BERTH_DAEMON_PID:-}" ]; then
        kill "$BERTH_DAEMON_PID" 2>/dev/null || true
        wait "$BERTH_DAEMON_PID" 2>/dev/null || true
        BERTH_DAEMON_PID=
    fi
    if [ -n "${BERTH_DAEMON_DATA:-}" ]; then
        berth_net_cleanup "$BERTH_DAEMON_DATA"
        BERTH_DAEMON_DATA=
    fi
}
