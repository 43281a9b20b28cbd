# Scenario netfeat: issue 15's DNS, hosts and bandwidth options from real clients. The docker
# CLIs (28 and 20.10) and the Python SDK: --dns --dns-search --dns-option --add-host
# (host:ip and host-gateway) on the default bridge, a user network and the host network;
# berth's bandwidth limit as docker 28's --annotation io.berth.network-rate=, as a label from
# docker 20.10 and the SDK, and berth's own run --network-rate / update --network-rate, with
# iperf3 measuring it; bad values refused naming them. Traffic only goes to 127.0.0.1 and to
# the containers this scenario made. Sourced by run.sh (its daemon, socket and temp dir).

# nf_dns NAME DOCKER NETWORK GATEWAY: resolv.conf and hosts of a container on NETWORK
nf_dns() {
    local n=$1 D=$2 net=$3 gw=$4 out
    # $D unquoted: berth is "berth -H unix://..."
    out=$(timeout 30 $D run --rm --network "$net" --dns 192.0.2.53 --dns 192.0.2.54 \
        --dns-search a.example --dns-option ndots:3 --add-host db.test:192.0.2.10 \
        --add-host gw.test:host-gateway busybox sh -c 'cat /etc/resolv.conf; cat /etc/hosts' 2>&1)
    contains "netfeat $n: --dns on $net" "nameserver 192.0.2.53
nameserver 192.0.2.54" "$out"
    contains "netfeat $n: --dns-search on $net" "search a.example" "$out"
    contains "netfeat $n: --dns-option on $net" "options ndots:3" "$out"
    contains "netfeat $n: --add-host on $net" "$(printf '192.0.2.10\tdb.test')" "$out"
    contains "netfeat $n: --add-host host-gateway on $net" "$(printf '%s\tgw.test' "$gw")" "$out"
}

# nf_mbit PORT [-R]: Mbit/s an iperf3 client on the host receives from/through 127.0.0.1:PORT
nf_mbit() {
    local i out
    for i in $(seq 50); do
        out=$(timeout 30 iperf3 -c 127.0.0.1 -p "$1" -t 4 -O 1 -J ${2:-} 2>/dev/null \
            | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6, 2))' 2>/dev/null)
        [ -n "$out" ] && { echo "$out"; return; }
        sleep 0.2
    done
    echo 0
}

# nf_near GOT WANT: within 10%
nf_near() { python3 -c "import sys; g,w=float(sys.argv[1]),float(sys.argv[2]); sys.exit(abs(g-w)>w*0.1)" "$1" "$2"; }

scenario_netfeat() {
    echo "# scenario netfeat"
    if ! command -v nft >/dev/null; then
        skip "netfeat: nft (Debian's nftables) is not installed"
        return
    fi
    local D=$DOCKER28 BK="$BERTH -H unix://$SOCK" bgw ugw out id port a b PY
    timeout 10 $D network create nfnet >/dev/null
    check "netfeat: network create" [ $? = 0 ]
    bgw=$(timeout 10 $D network inspect -f '{{(index .IPAM.Config 0).Gateway}}' bridge)
    ugw=$(timeout 10 $D network inspect -f '{{(index .IPAM.Config 0).Gateway}}' nfnet)
    nf_dns 28 "$D" bridge "$bgw"
    nf_dns 28 "$D" nfnet "$ugw"
    nf_dns 28 "$D" host "$bgw"
    out=$(timeout 30 $D run --rm --network nfnet --dns 192.0.2.53 busybox head -1 /etc/resolv.conf 2>&1)
    eq "netfeat 28: the embedded DNS stays the first nameserver on a user network" "nameserver $ugw" "$out"
    if [ -x "$DOCKER20" ]; then
        nf_dns 20 "$DOCKER20" bridge "$bgw"
        nf_dns 20 "$DOCKER20" nfnet "$ugw"
    else
        skip "netfeat: docker 20.10 (Debian's docker.io client) is not installed"
    fi
    nf_dns berth "$BERTH -H unix://$SOCK" nfnet "$ugw"
    out=$(timeout 30 $D run --rm --dns not-an-ip busybox true 2>&1)
    contains "netfeat 28: a bad --dns is refused" "not-an-ip" "$out"

    # bandwidth: docker 28's --annotation, measured both ways, then update and restart
    if ! command -v iperf3 >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null 2>&1
    fi
    out=$(timeout 30 $D run --rm --annotation io.berth.network-rate=fast busybox true 2>&1)
    contains "netfeat 28: a bad --annotation io.berth.network-rate is refused" '"fast"' "$out"
    if command -v iperf3 >/dev/null; then
        mkdir -p "$T/iperf"
        id=$(timeout 30 $D run -d --annotation io.berth.network-rate=10mbit -p 127.0.0.1::5201 \
            -e TMPDIR="$T/iperf" -v /:/host:ro -v "$T/iperf:/host$T/iperf" \
            busybox chroot /host /usr/bin/iperf3 -s -p 5201 2>&1)
        out=$(timeout 10 $D inspect -f '{{index .HostConfig.Annotations "io.berth.network-rate"}} / {{index .HostConfig.Annotations "io.berth.network-rate.applied"}}' "$id" 2>&1)
        eq "netfeat 28: inspect shows the rate and what is applied" "10mbit / eth0 egress=10mbit ingress=10mbit" "$out"
        port=$(timeout 10 $D port "$id" 5201/tcp | head -1 | cut -d: -f2)
        a=$(nf_mbit "$port")
        b=$(nf_mbit "$port" -R)
        check "netfeat 28: 10mbit into the container holds within 10% ($a Mbit/s)" nf_near "$a" 10
        check "netfeat 28: 10mbit out of the container holds within 10% ($b Mbit/s)" nf_near "$b" 10
        out=$(timeout 30 $D stats --no-stream --format '{{.NetIO}}' "$id" 2>&1)
        case "$out" in
            [1-9]*MB\ /\ [1-9]*MB) ok "netfeat 28: stats --no-stream shows the NET I/O ($out)" ;;
            *) fail "netfeat 28: stats --no-stream NET I/O: [$out]" ;;
        esac
        out=$(timeout 10 $BK update --network-rate 20mbit "$id" 2>&1)
        check "netfeat berth: update --network-rate 20mbit" [ $? = 0 ]
        a=$(nf_mbit "$port")
        b=$(nf_mbit "$port" -R)
        check "netfeat berth: after update, 20mbit in within 10% ($a Mbit/s)" nf_near "$a" 20
        check "netfeat berth: after update, 20mbit out within 10% ($b Mbit/s)" nf_near "$b" 20
        out=$(timeout 10 $BK update --network-rate 20furlongs "$id" 2>&1)
        contains "netfeat berth: update with a bad rate is refused naming it" "20furlongs" "$out"
        timeout 10 $BK update --network-rate-egress 2mbit "$id" >/dev/null 2>&1
        out=$(timeout 10 $D inspect -f '{{index .HostConfig.Annotations "io.berth.network-rate.applied"}}' "$id" 2>&1)
        eq "netfeat berth: update --network-rate-egress" "eth0 egress=2mbit ingress=20mbit" "$out"
        out=$(timeout 30 $D restart -t 1 "$id" 2>&1)
        check "netfeat 28: restart ($out)" [ $? = 0 ]
        out=$(timeout 10 $D inspect -f '{{index .HostConfig.Annotations "io.berth.network-rate.applied"}}' "$id" 2>&1)
        eq "netfeat 28: a restart applies the updated rate again" "eth0 egress=2mbit ingress=20mbit" "$out"
        timeout 30 $D rm -f "$id" >/dev/null 2>&1
    else
        skip "netfeat: iperf3 is not installed and apt-get install iperf3 failed"
    fi

    # berth's own flag, and a label from docker 20.10
    id=$(timeout 30 $BK run -d --network-rate 1gbit --network-rate-ingress 300mbit --network nfnet busybox sleep 60 2>&1)
    out=$(timeout 10 $D inspect -f '{{index .HostConfig.Annotations "io.berth.network-rate.applied"}}' "$id" 2>&1)
    eq "netfeat berth: run --network-rate --network-rate-ingress on a user network" "eth0 egress=1gbit ingress=300mbit" "$out"
    timeout 30 $D rm -f "$id" >/dev/null 2>&1
    if [ -x "$DOCKER20" ]; then
        id=$(timeout 30 "$DOCKER20" run -d --label io.berth.network-rate=500kbit busybox sleep 60 2>&1)
        out=$(timeout 10 "$DOCKER20" inspect "$id" 2>&1 | grep -o '"io.berth.network-rate.applied": "[^"]*"')
        eq "netfeat 20: a label io.berth.network-rate limits" '"io.berth.network-rate.applied": "eth0 egress=500kbit ingress=500kbit"' "$out"
        timeout 30 "$DOCKER20" rm -f "$id" >/dev/null 2>&1
    fi

    # the Python SDK: dns, dns_search, dns_opt, extra_hosts, and the rate as a label
    PY=
    if python3 -c 'import docker' 2>/dev/null; then
        PY=python3
    elif [ -x "$T/venv/bin/python3" ] && "$T/venv/bin/python3" -c 'import docker' 2>/dev/null; then
        PY=$T/venv/bin/python3
    fi
    if [ -n "$PY" ]; then
        out=$(timeout 60 "$PY" - <<'EOF' 2>&1
import docker
c = docker.from_env()
print(c.containers.run("busybox", ["sh", "-c", "cat /etc/resolv.conf /etc/hosts"], remove=True,
      dns=["192.0.2.77"], dns_search=["sdk.example"], dns_opt=["ndots:4"],
      extra_hosts={"sdk.test": "192.0.2.78"}).decode())
k = c.containers.run("busybox", ["sleep", "60"], detach=True,
      labels={"io.berth.network-rate": "2mbit"})
k.reload()
print("applied:", k.attrs["HostConfig"]["Annotations"]["io.berth.network-rate.applied"])
k.remove(force=True)
try:
    c.containers.run("busybox", "true", remove=True, labels={"io.berth.network-rate": "quick"})
except docker.errors.APIError as e:
    print("refused:", e.status_code, e.explanation)
EOF
)
        contains "netfeat sdk: dns" "nameserver 192.0.2.77" "$out"
        contains "netfeat sdk: dns_search" "search sdk.example" "$out"
        contains "netfeat sdk: dns_opt" "options ndots:4" "$out"
        contains "netfeat sdk: extra_hosts" "$(printf '192.0.2.78\tsdk.test')" "$out"
        contains "netfeat sdk: a label io.berth.network-rate limits" "applied: eth0 egress=2mbit ingress=2mbit" "$out"
        contains "netfeat sdk: a bad rate is a 400 naming it" 'refused: 400 io.berth.network-rate: invalid network rate "quick"' "$out"
    else
        skip "netfeat: the Python docker SDK is not installed (the sdk scenario installs it)"
    fi
    timeout 10 $D network rm nfnet >/dev/null 2>&1
}
