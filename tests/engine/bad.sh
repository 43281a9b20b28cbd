# Scenario 5: bad input over the raw API; after each, the daemon still answers /_ping.
# Sourced by run.sh.
api() { curl -s --max-time 30 --unix-socket "$SOCK" "$@"; }
# code_body ARGS...: "<status> <body>"
code_body() {
    local out
    out=$(api -w '\n%{http_code}' "$@")
    echo "${out##*$'\n'} ${out%$'\n'*}"
}
still_pings() { if ping_ok; then ok "bad: /_ping after $1"; else fail "bad: no /_ping after $1"; fi; }

scenario_bad() {
    echo "# scenario bad"
    local out
    out=$(code_body -XPOST -H 'Content-Type: application/json' -d '{"Image": "busybox", "Cmd": ' http://x/containers/create)
    case "$out" in "400 "*) ok "bad: truncated JSON is a 400 ($out)" ;; *) fail "bad: truncated JSON: $out" ;; esac
    out=$(code_body -XPOST -H 'Content-Type: application/json' -d '{"Image": "busybox", "Cmd": 5}' http://x/containers/create)
    case "$out" in "400 "*Cmd*) ok "bad: a field of the wrong type is a 400 naming it ($out)" ;; *) fail "bad: Cmd of the wrong type: $out" ;; esac
    still_pings "malformed JSON"
    out=$(code_body -XPOST -H 'Content-Type: application/json' -d '{"Image": "nosuchimage:acc"}' http://x/containers/create)
    case "$out" in "404 "*"No such image"*) ok "bad: unknown image is a 404" ;; *) fail "bad: unknown image: $out" ;; esac
    out=$(code_body http://x/containers/nosuchcontainer/json)
    case "$out" in "404 "*"No such container"*) ok "bad: unknown container is a 404" ;; *) fail "bad: unknown container: $out" ;; esac
    still_pings "unknown image"
    api -XPOST -H 'Content-Type: application/json' -d '{"Image": "busybox"}' 'http://x/containers/create?name=badname' >/dev/null
    out=$(code_body -XPOST -H 'Content-Type: application/json' -d '{"Image": "busybox"}' 'http://x/containers/create?name=badname')
    case "$out" in "409 "*badname*'is already in use'*) ok "bad: a name conflict is a 409 naming it" ;; *) fail "bad: name conflict: $out" ;; esac
    api -XDELETE http://x/containers/badname >/dev/null

    head -c 52428800 /dev/zero | tr '\0' 'a' >"$T/big.json"
    out=$(code_body -XPOST -H 'Content-Type: application/json' --data-binary @"$T/big.json" http://x/containers/create | cut -c1-200)
    rm -f "$T/big.json"
    case "$out" in 4[0-9][0-9]" {\"message\":"*) ok "bad: a 50 MB body is a clean JSON error (${out:0:80})" ;; *) fail "bad: a 50 MB body: [$out]" ;; esac
    still_pings "a 50 MB body"
    eq "bad: nothing half-created by the bad requests" "" "$(timeout 10 "$DOCKER28" ps -aq)"

    # a client that goes away in the middle of an attach
    timeout 30 "$DOCKER28" run -d --name badattach busybox sh -c 'while :; do echo tick; sleep 0.1; done' >/dev/null
    api --max-time 1 -XPOST -H 'Connection: Upgrade' -H 'Upgrade: tcp' \
        'http://x/containers/badattach/attach?stream=1&stdout=1&stderr=1' -o /dev/null
    timeout 5 python3 - "$SOCK" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"POST /containers/badattach/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
s.recv(100)
s.close()
PY
    sleep 0.5
    still_pings "a client disconnecting mid-attach"
    out=$(timeout 10 "$DOCKER28" inspect --format '{{.State.Status}}' badattach)
    eq "bad: the container survives its attacher's disconnect" running "$out"
    out=$(timeout 10 "$DOCKER28" exec badattach echo still 2>&1)
    eq "bad: exec after the disconnect" still "$out"
    timeout 30 "$DOCKER28" rm -f badattach >/dev/null

    # 50 concurrent create+start
    out=$(timeout 120 python3 - "$SOCK" <<'PY'
import concurrent.futures, http.client, json, socket, sys

class Conn(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("x", timeout=60)
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(60)
        self.sock.connect(sys.argv[1])

def one(i):
    c = Conn()
    body = json.dumps({"Image": "busybox", "Cmd": ["sleep", "300"]})
    c.request("POST", "/containers/create?name=conc%d" % i, body, {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status != 201:
        return "create %d: %d %s" % (i, r.status, data[:200])
    cid = json.loads(data)["Id"]
    c.request("POST", "/containers/%s/start" % cid)
    r = c.getresponse()
    data = r.read()
    if r.status != 204:
        return "start %d: %d %s" % (i, r.status, data[:200])
    return None

with concurrent.futures.ThreadPoolExecutor(50) as ex:
    errs = [e for e in ex.map(one, range(50)) if e]
print("\n".join(errs[:5]) if errs else "all ok")
PY
)
    eq "bad: 50 concurrent create+start all succeed" "all ok" "$out"
    out=$(timeout 10 "$DOCKER28" ps -q --filter name=conc | wc -l)
    eq "bad: 50 concurrent containers running" 50 "$out"
    still_pings "50 concurrent create+start"
    timeout 120 "$DOCKER28" rm -f $(timeout 10 "$DOCKER28" ps -aq) >/dev/null 2>&1
}
