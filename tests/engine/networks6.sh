# Scenario networks6: dual-stack networks through the docker CLI (28 and 20.10) and the
# Python SDK: network create --ipv6 --subnet v4 --subnet v6 (and --ipv6 alone), inspect's
# EnableIPv6 and IPAM.Config, run --ip6, GlobalIPv6Address/IPv6Gateway, connect --ip6, a
# container reaching another over v6 by address and by name (AAAA), bad input refused, and
# nothing left behind. Traffic only goes to addresses this scenario made (a random ULA /48).
# Sourced by run.sh (its daemon, socket and temp dir).

scenario_networks6() {
    echo "# scenario networks6"
    if ! command -v nft >/dev/null; then
        skip "networks6: nft (Debian's nftables) is not installed"
        return
    fi
    if [ ! -e /proc/net/if_inet6 ]; then
        skip "networks6: the kernel has no IPv6"
        return
    fi
    local DK=$DOCKER28 k sub p6 out id1 gw6 left b ids bridges
    k=$(( $$ % 200 + 20 ))
    sub=10.$(( 110 + $$ % 40 )).$k
    # written as the daemon prints it (no leading zeros in a group)
    p6=$(printf 'fd%02x:%x:%x' $((RANDOM % 256)) $((RANDOM + 1)) $((RANDOM + 1)))

    timeout 10 $DK network create --ipv6 --subnet "$sub.0/24" --subnet "$p6:1::/64" n6a >/dev/null
    check "networks6: create --ipv6 --subnet v4 --subnet v6" [ $? = 0 ]
    out=$(timeout 10 $DK network inspect -f '{{.EnableIPv6}} {{len .IPAM.Config}} {{(index .IPAM.Config 1).Subnet}} {{(index .IPAM.Config 1).Gateway}}' n6a)
    eq "networks6: inspect EnableIPv6 and both configs" "true 2 $p6:1::/64 $p6:1::1" "$out"
    timeout 10 $DK network create --ipv6 n6b >/dev/null
    check "networks6: create --ipv6 alone" [ $? = 0 ]
    out=$(timeout 10 $DK network inspect -f '{{(index .IPAM.Config 1).Subnet}}' n6b)
    case "$out" in fd*::/64) ok "networks6: --ipv6 alone picks a ULA /64 ($out)" ;; *) fail "networks6: --ipv6 alone: [$out]" ;; esac
    out=$(timeout 10 $DK network create --ipv6 --subnet "$p6:1::/80" n6x 2>&1)
    contains "networks6: an overlapping v6 subnet is refused" "overlaps" "$out"
    out=$(timeout 10 $DK network create --ipv6 --subnet "$p6:4::/64" --gateway "$p6:5::1" n6x 2>&1)
    contains "networks6: a v6 gateway outside its subnet is refused" "$p6:5::1" "$out"
    out=$(timeout 10 $DK network create --ipv6 --subnet "$p6:4::/127" n6x 2>&1)
    contains "networks6: a bad v6 prefix is refused" "/127" "$out"
    out=$(timeout 10 $DK network ls -q --filter name=n6x)
    eq "networks6: nothing half-made" "" "$out"
    if [ -x "$DOCKER20" ]; then
        timeout 10 "$DOCKER20" network create --ipv6 --subnet "$sub.0/24" --subnet "$p6:2::/64" n6c >"$T/n6c.out" 2>&1
        contains "networks6: docker 20.10 refuses an overlapping v4 subnet" "overlaps" "$(cat "$T/n6c.out")"
        timeout 10 "$DOCKER20" network create --ipv6 --subnet "10.$(( 110 + $$ % 40 )).$((k + 1)).0/24" --subnet "$p6:2::/64" n6c >/dev/null
        check "networks6: docker 20.10 network create --ipv6 --subnet --subnet" [ $? = 0 ]
        out=$(timeout 10 "$DOCKER20" network inspect -f '{{.EnableIPv6}} {{(index .IPAM.Config 1).Subnet}}' n6c)
        eq "networks6: docker 20.10 network inspect" "true $p6:2::/64" "$out"
        timeout 20 "$DOCKER20" run --rm --network n6c --ip6 "$p6:2::20" busybox sh -c "ip -6 addr show eth0 | grep -q '$p6:2::20/64'"
        check "networks6: docker 20.10 run --ip6" [ $? = 0 ]
    fi

    timeout 20 $DK run -d --name n6c1 --network n6a --ip6 "$p6:1::10" --network-alias web6 \
        busybox httpd -f -p 80 -h /etc >/dev/null
    check "networks6: run --network --ip6" [ $? = 0 ]
    id1=$(timeout 10 $DK inspect -f '{{.Id}}' n6c1)
    out=$(timeout 10 $DK inspect -f '{{.NetworkSettings.Networks.n6a.GlobalIPv6Address}} {{.NetworkSettings.Networks.n6a.GlobalIPv6PrefixLen}} {{.NetworkSettings.Networks.n6a.IPv6Gateway}}' n6c1)
    eq "networks6: inspect GlobalIPv6Address/PrefixLen/IPv6Gateway" "$p6:1::10 64 $p6:1::1" "$out"
    out=$(timeout 10 $DK network inspect -f "{{(index .Containers \"$id1\").IPv6Address}}" n6a)
    eq "networks6: network inspect shows the container's IPv6Address" "$p6:1::10/64" "$out"
    out=$(timeout 20 $DK run --rm --network n6a busybox sh -c \
        "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $p6:1::10 80" 2>&1)
    contains "networks6: a container reaches another over v6" "${id1:0:12}" "$out"
    out=$(timeout 20 $DK run --rm --network n6a busybox nslookup -type=AAAA web6 2>&1)
    contains "networks6: AAAA for an alias through the embedded DNS" "$p6:1::10" "$out"
    timeout 20 $DK run --rm --network n6b busybox ping -6 -c1 -W2 "$p6:1::10" >/dev/null 2>&1
    check "networks6: a container on another v6 network cannot" [ $? != 0 ]
    timeout 20 $DK run -d --name n6c2 --network n6b busybox sleep 60 >/dev/null
    timeout 10 $DK network connect --ip6 "$p6:1::30" n6a n6c2
    check "networks6: connect --ip6 a running container" [ $? = 0 ]
    out=$(timeout 10 $DK inspect -f '{{.NetworkSettings.Networks.n6a.GlobalIPv6Address}}' n6c2)
    eq "networks6: the connected v6 address" "$p6:1::30" "$out"
    out=$(timeout 20 $DK exec n6c2 sh -c "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $p6:1::10 80" 2>&1)
    contains "networks6: reachable over v6 on the connected network" "${id1:0:12}" "$out"

    # a published port answers on a host IPv6 address (the gateway of n6a is one)
    local pid6 port6
    pid6=$(timeout 20 $DK run -d --name n6p1 --network n6a -p 80 busybox httpd -f -p 80 -h /etc)
    out=$(timeout 10 $DK port n6p1 80/tcp | head -1)
    port6=${out##*:}
    out=""
    for _ in $(seq 1 50); do
        out=$(curl -sg --max-time 5 "http://[$p6:1::1]:$port6/hostname") && break
        sleep 0.1
    done
    eq "networks6: a published port on the host's IPv6 address" "${pid6:0:12}" "$out"

    # a v6 lease of a container that ends while the daemon is killed is released at restart
    local gone
    gone=$(timeout 20 $DK run -d --network n6a --ip6 "$p6:1::40" busybox sleep 1)
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
    sleep 1.5
    start_daemon || { fail "networks6: the daemon does not restart"; return; }
    out=$(timeout 10 $DK inspect -f '{{.State.Status}} [{{.NetworkSettings.Networks.n6a.GlobalIPv6Address}}]' "$gone")
    eq "networks6: exited while the daemon was away: no v6 lease" "exited []" "$out"
    timeout 20 $DK run --rm --network n6a --ip6 "$p6:1::40" busybox true
    check "networks6: its v6 address can be leased again" [ $? = 0 ]
    out=$(timeout 20 $DK run --rm --network n6a busybox sh -c \
        "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $p6:1::10 80" 2>&1)
    contains "networks6: v6 between containers after a daemon kill -9 and restart" "${id1:0:12}" "$out"

    # berth's own CLI
    "$BERTH" -H "unix://$SOCK" network create --ipv6 --subnet "10.$(( 110 + $$ % 40 )).$((k + 2)).0/24" \
        --subnet "$p6:6::/64" --gateway "$p6:6::fe" n6d >/dev/null
    check "networks6: berth network create --ipv6 --subnet --subnet --gateway" [ $? = 0 ]
    out=$("$BERTH" -H "unix://$SOCK" network inspect -f '{{(index .IPAM.Config 1).Gateway}}' n6d)
    eq "networks6: berth network inspect (the v6 gateway)" "$p6:6::fe" "$out"
    out=$(timeout 20 "$BERTH" -H "unix://$SOCK" run --rm --network n6d --ip6 "$p6:6::7" busybox ip -6 route show default 2>&1)
    contains "networks6: berth run --ip6 (default v6 route via the gateway)" "via $p6:6::fe" "$out"
    "$BERTH" -H "unix://$SOCK" network rm n6d >/dev/null
    check "networks6: berth network rm" [ $? = 0 ]

    # the Python SDK (the sdk scenario's venv, or one made here as it does)
    if [ -z "${PY:-}" ]; then
        if python3 -c 'import docker' 2>/dev/null; then
            PY=python3
        elif [ -x "$T/venv/bin/python3" ] || { python3 -m venv "$T/venv" >/dev/null 2>&1 &&
            "$T/venv/bin/pip" install -q docker >/dev/null 2>&1; }; then
            PY=$T/venv/bin/python3
        fi
    fi
    if [ -n "${PY:-}" ] && "$PY" -c 'import docker' 2>/dev/null; then
        out=$(timeout 120 "$PY" - "$p6" "$k" <<'PYEOF' 2>&1
import sys, docker
c = docker.from_env()
p6, k = sys.argv[1], sys.argv[2]
ipam = docker.types.IPAMConfig(pool_configs=[
    docker.types.IPAMPool(subnet="10.248.%s.0/24" % k),
    docker.types.IPAMPool(subnet=p6 + ":3::/64", gateway=p6 + ":3::1")])
n = c.networks.create("n6py", driver="bridge", enable_ipv6=True, ipam=ipam)
assert n.attrs["EnableIPv6"] is True, n.attrs
assert [x["Subnet"] for x in n.attrs["IPAM"]["Config"]] == ["10.248.%s.0/24" % k, p6 + ":3::/64"], n.attrs
b = c.containers.create("busybox", ["sleep", "30"], name="n6py1")
n.connect(b, ipv6_address=p6 + ":3::40")
b.start()
b.reload()
ep = b.attrs["NetworkSettings"]["Networks"]["n6py"]
assert ep["GlobalIPv6Address"] == p6 + ":3::40", ep
assert ep["IPv6Gateway"] == p6 + ":3::1", ep
b.remove(force=True)
n.remove()
print("ok   networks6: python SDK")
PYEOF
)
        case "$out" in *"ok   networks6: python SDK"*) ok "networks6: python SDK create enable_ipv6/connect ipv6_address/inspect" ;; *) fail "networks6: python SDK: $out" ;; esac
    else
        skip "networks6: the Python docker SDK (made by the sdk scenario) is not there"
    fi

    # removal leaves nothing behind: no bridge, veth, v6 address or ip6 rule
    ids=$(timeout 10 $DK ps -aq --no-trunc --filter name=n6; echo "$gone")
    [ -n "$ids" ] && timeout 60 $DK rm -f $ids >/dev/null
    bridges=$(timeout 10 $DK network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' n6a n6b $([ -x "$DOCKER20" ] && echo n6c) 2>/dev/null)
    timeout 10 $DK network rm n6a n6b >/dev/null
    check "networks6: rm" [ $? = 0 ]
    [ -x "$DOCKER20" ] && timeout 10 $DK network rm n6c >/dev/null
    # what a failed check above may have left (their own checks said so already)
    for b in n6py n6d; do timeout 10 $DK network rm "$b" >/dev/null 2>&1; done
    left=""
    for b in $bridges; do [ -d "/sys/class/net/$b" ] && left="$left $b"; done
    for id in $ids; do [ -d "/sys/class/net/vb${id:0:9}0" ] && left="$left vb${id:0:9}0"; done
    ip -6 addr | grep -q "$p6:" && left="$left v6-address"
    nft list table ip6 "berth_$(printf %s "$DATA" | sha256sum | cut -c1-6)" >/dev/null 2>&1 && left="$left ip6-table"
    eq "networks6: nothing left behind" "" "$left"
}
