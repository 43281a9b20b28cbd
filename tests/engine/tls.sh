# Scenario: the API on TCP behind TLS. Sourced by run.sh (ONLY=tls runs it alone).
# Makes a CA, a server certificate (SAN IP:127.0.0.1) and client certificates with openssl,
# plus a foreign CA and a client certificate of it; starts a second daemon of its own (own
# unix socket, data root and exec root under $T/t) on a free 127.0.0.1 port with --tlsverify,
# and drives it with the docker CLI 28, berth's CLI (DOCKER_CERT_PATH) and the Python SDK.
# Clients without a certificate or with the foreign CA's are refused at the handshake; a
# tcp:// daemon without TLS is refused at start with a clear message.

TLS_PID=
tls_stop() {
    if [ -n "$TLS_PID" ] && kill -0 "$TLS_PID" 2>/dev/null; then
        local ids
        ids=$(tls_docker ps -aq 2>/dev/null)
        [ -n "$ids" ] && tls_docker rm -f $ids >/dev/null 2>&1
        kill -TERM "$TLS_PID"
        local i
        for i in $(seq 1 50); do kill -0 "$TLS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$TLS_PID" 2>/dev/null
    fi
    TLS_PID=
}

tls_make_certs() {
    local d=$1
    mkdir -p "$d/client" "$d/foreign" "$d/nocert"
    (
        cd "$d" || exit 1
        # -addext: a CA certificate must say it is one (webpki and Go check it)
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=berth-test-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout ca-key.pem -out ca.pem &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
            -keyout server-key.pem -out server.csr &&
        printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext &&
        openssl x509 -req -days 2 -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -extfile server.ext -out server-cert.pem &&
        printf 'extendedKeyUsage=clientAuth\n' >client.ext &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client/key.pem -out client.csr &&
        openssl x509 -req -days 2 -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -extfile client.ext -out client/cert.pem &&
        cp ca.pem client/ca.pem && cp ca.pem nocert/ca.pem &&
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=foreign-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout foreign-ca-key.pem -out foreign-ca.pem &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=intruder -keyout foreign/key.pem -out foreign.csr &&
        openssl x509 -req -days 2 -in foreign.csr -CA foreign-ca.pem -CAkey foreign-ca-key.pem \
            -CAcreateserial -extfile client.ext -out foreign/cert.pem &&
        cp ca.pem foreign/ca.pem
    ) >"$d/openssl.log" 2>&1
}

scenario_tls() {
    echo "# scenario tls"
    if ! command -v openssl >/dev/null; then
        skip "tls: openssl is not installed"
        return
    fi
    local TD=$T/t
    local C=$TD/certs
    mkdir -p "$TD"
    if ! tls_make_certs "$C"; then
        fail "tls: make certificates with openssl"
        cat "$C/openssl.log"
        return
    fi
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    local H=tcp://127.0.0.1:$port

    # plain TCP: refused at start, with the reason and the flags to give
    local out
    out=$(timeout 20 "$BERTH" daemon -H "$H" --config-file "$TD/none.json" --data-root "$TD/data" \
        --exec-root "$TD/run" --pidfile "$TD/pid" 2>&1 </dev/null)
    local rc=$?
    if [ "$rc" != 0 ]; then ok "tls: a tcp:// daemon without TLS does not start"; else fail "tls: a tcp:// daemon without TLS started"; fi
    contains "tls: the refusal says why" "without TLS" "$out"
    contains "tls: the refusal names --tlsverify" "--tlsverify" "$out"

    setsid "$BERTH" daemon -H "unix://$TD/berth.sock" -H "$H" --tlsverify \
        --tlscacert "$C/ca.pem" --tlscert "$C/server-cert.pem" --tlskey "$C/server-key.pem" \
        --config-file "$TD/none.json" --data-root "$TD/data" --exec-root "$TD/run" \
        --pidfile "$TD/pid" </dev/null >>"$TD/daemon.log" 2>&1 &
    TLS_PID=$!
    local i up=
    for i in $(seq 1 100); do
        if curl -sf --max-time 2 --cacert "$C/ca.pem" --cert "$C/client/cert.pem" \
            --key "$C/client/key.pem" "https://127.0.0.1:$port/_ping" >/dev/null 2>&1; then
            up=1
            break
        fi
        sleep 0.1
    done
    if [ -z "$up" ]; then
        fail "tls: the daemon answers /_ping over TLS with a client certificate"
        tail -20 "$TD/daemon.log"
        tls_stop
        return
    fi
    ok "tls: the daemon answers /_ping over TLS with a client certificate"
    tls_docker() {
        DOCKER_HOST= timeout 60 "$DOCKER28" -H "$H" --tlsverify --tlscacert "$C/ca.pem" \
            --tlscert "$C/client/cert.pem" --tlskey "$C/client/key.pem" "$@"
    }

    # refused at the handshake: no certificate, a foreign CA's certificate
    # refused (rc != 0) with an error that is about the certificate, not some other failure
    refused() {
        local name=$1
        shift
        local err
        if err=$("$@" 2>&1 >/dev/null); then
            fail "$name: accepted"
        else
            echo "     $name: ${err:0:200}" | tr '\n' ' '
            echo
            if echo "$err" | grep -qiE 'certificate|unknown ?ca'; then
                ok "$name"
            else
                fail "$name: the error is not about the certificate: $err"
            fi
        fi
    }
    refused "tls: curl without a client certificate is refused" \
        curl -sS --max-time 10 --cacert "$C/ca.pem" "https://127.0.0.1:$port/_ping"
    refused "tls: curl with a foreign CA's certificate is refused" \
        curl -sS --max-time 10 --cacert "$C/ca.pem" --cert "$C/foreign/cert.pem" \
        --key "$C/foreign/key.pem" "https://127.0.0.1:$port/_ping"
    refused "tls: docker with a foreign CA's certificate is refused" \
        env DOCKER_HOST= DOCKER_CERT_PATH="$C/foreign" DOCKER_TLS_VERIFY=1 timeout 30 "$DOCKER28" \
        -H "$H" ps
    refused "tls: berth with a foreign CA's certificate is refused" \
        env DOCKER_HOST= BERTH_HOST= DOCKER_CERT_PATH="$C/foreign" DOCKER_TLS_VERIFY=1 timeout 30 \
        "$BERTH" -H "$H" ps
    refused "tls: docker without a client certificate is refused" \
        env DOCKER_HOST= timeout 30 "$DOCKER28" -H "$H" --tls --tlscacert "$C/ca.pem" ps

    # the docker CLI 28 over TLS: the image by import, then run, exec, logs, attach with stdin
    if tls_docker import "$T/bb.tar" busybox:latest >/dev/null; then
        ok "tls: docker import over TLS"
    else
        fail "tls: docker import over TLS"
    fi
    eq "tls: docker run --rm over TLS" "hello tls" "$(tls_docker run --rm busybox echo hello tls 2>&1)"
    eq "tls: docker run --rm -i with stdin over TLS" "from stdin" \
        "$(echo 'from stdin' | tls_docker run --rm -i busybox cat 2>&1)"
    local id
    id=$(tls_docker run -d --name tls-top busybox sh -c 'echo logged; exec sleep 300' 2>&1)
    check "tls: docker run -d over TLS" test ${#id} = 64
    contains "tls: docker ps over TLS" "tls-top" "$(tls_docker ps 2>&1)"
    eq "tls: docker exec over TLS" "in exec" "$(tls_docker exec tls-top echo in exec 2>&1)"
    eq "tls: docker exec -i over TLS" "piped" "$(echo piped | tls_docker exec -i tls-top cat 2>&1)"
    for i in $(seq 1 50); do
        [ "$(tls_docker logs tls-top 2>&1)" = logged ] && break
        sleep 0.1
    done
    eq "tls: docker logs over TLS" "logged" "$(tls_docker logs tls-top 2>&1)"

    # berth's CLI with DOCKER_CERT_PATH + DOCKER_TLS_VERIFY, and with the flags
    local bt=(env DOCKER_HOST= BERTH_HOST= DOCKER_CERT_PATH="$C/client" DOCKER_TLS_VERIFY=1 timeout 60 "$BERTH" -H "$H")
    contains "tls: berth ps with DOCKER_CERT_PATH" "tls-top" "$("${bt[@]}" ps 2>&1)"
    eq "tls: berth run --rm with DOCKER_CERT_PATH" "berth tls" "$("${bt[@]}" run --rm busybox echo berth tls 2>&1)"
    eq "tls: berth run --rm -i with stdin over TLS" "berth stdin" \
        "$(echo 'berth stdin' | "${bt[@]}" run --rm -i busybox cat 2>&1)"
    eq "tls: berth exec over TLS" "berth exec" "$("${bt[@]}" exec tls-top echo berth exec 2>&1)"
    eq "tls: berth logs over TLS" "logged" "$("${bt[@]}" logs tls-top 2>&1)"
    eq "tls: berth inspect over TLS" "/tls-top" "$("${bt[@]}" inspect -f '{{.Name}}' tls-top 2>&1)"
    contains "tls: berth images over TLS" "busybox" "$("${bt[@]}" images 2>&1)"
    eq "tls: berth with --tlsverify flags" "flags" "$(DOCKER_HOST= BERTH_HOST= timeout 60 "$BERTH" \
        -H "$H" --tlsverify --tlscacert "$C/ca.pem" --tlscert "$C/client/cert.pem" \
        --tlskey "$C/client/key.pem" run --rm busybox echo flags 2>&1)"

    # the Python SDK with TLSConfig
    local py=python3
    python3 -c 'import docker' 2>/dev/null || py=$T/venv/bin/python3
    if "$py" -c 'import docker' 2>/dev/null; then
        # requests lets these override the SDK's ca_cert; the CA is the one given
        out=$(env -u REQUESTS_CA_BUNDLE -u CURL_CA_BUNDLE timeout 60 "$py" - "$port" "$C" <<'EOF' 2>&1
import sys, docker
port, c = sys.argv[1], sys.argv[2]
tls = docker.tls.TLSConfig(client_cert=(c + "/client/cert.pem", c + "/client/key.pem"),
                           ca_cert=c + "/ca.pem", verify=True)
cl = docker.DockerClient(base_url="https://127.0.0.1:" + port, tls=tls)
assert cl.ping()
out = cl.containers.run("busybox", ["echo", "sdk tls"], remove=True)
print(out.decode().strip())
EOF
)
        eq "tls: the Python SDK with TLSConfig" "sdk tls" "$out"
    else
        skip "tls: the Python docker SDK is not installed (the sdk scenario installs it)"
    fi

    tls_stop

    # --tls alone (dockerd allows it): server TLS, no client certificate asked, a warning
    local port2
    port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    setsid "$BERTH" daemon -H "unix://$TD/berth.sock" -H "tcp://127.0.0.1:$port2" --tls \
        --tlscert "$C/server-cert.pem" --tlskey "$C/server-key.pem" \
        --config-file "$TD/none.json" --data-root "$TD/data" --exec-root "$TD/run" \
        --pidfile "$TD/pid" </dev/null >"$TD/daemon-tls.log" 2>&1 &
    TLS_PID=$!
    out=
    for i in $(seq 1 100); do
        out=$(curl -s --max-time 2 --cacert "$C/ca.pem" "https://127.0.0.1:$port2/_ping" 2>&1) && break
        sleep 0.1
    done
    eq "tls: --tls alone serves TLS without a client certificate" "OK" "$out"
    contains "tls: --tls alone warns" "without --tlsverify" "$(cat "$TD/daemon-tls.log")"
    tls_stop
}
