# Scenario networks: the docker CLI (28 and 20.10) and the Python SDK against berth's
# networks: network create/ls/inspect/connect/disconnect/rm/prune, run --network --ip
# --network-alias -p -P, port; a connection through a published port that survives a daemon
# kill -9; nothing left behind (veths, namespaces, bridges, rules). Traffic only goes to
# addresses this scenario made. Sourced by run.sh (its daemon, socket and temp dir).

nw_get() { # IP PORT: GET /hostname through busybox nc, from inside a container
    printf "printf 'GET /hostname HTTP/1.0\\\\r\\\\n\\\\r\\\\n' | nc -w 5 %s %s" "$1" "$2"
}

scenario_networks() {
    echo "# scenario networks"
    if ! command -v nft >/dev/null; then
        skip "networks: nft (Debian's nftables) is not installed"
        return
    fi
    local DK=$DOCKER28 k sub ip out id1 port rc pyout left
    k=$(( $$ % 200 + 20 ))
    sub=10.$(( 150 + $$ % 50 )).$k
    timeout 10 $DK network create --subnet "$sub.0/24" --label nwt=1 nwa >/dev/null
    check "networks: create --subnet --label" [ $? = 0 ]
    timeout 10 $DK network create --internal nwb >/dev/null
    check "networks: create --internal" [ $? = 0 ]
    out=$(timeout 10 $DK network ls --filter label=nwt=1 --format '{{.Name}}')
    eq "networks: ls --filter label" "nwa" "$out"
    out=$(timeout 10 $DK network inspect -f '{{(index .IPAM.Config 0).Subnet}} {{.Internal}}' nwa)
    eq "networks: inspect" "$sub.0/24 false" "$out"
    if [ -x "$DOCKER20" ]; then
        out=$(timeout 10 "$DOCKER20" network ls --format '{{.Name}}' | sort | tr '\n' ' ')
        eq "networks: docker 20.10 network ls" "bridge nwa nwb " "$out"
    fi
    out=$(timeout 10 $DK network create --subnet "$sub.128/25" nwc 2>&1)
    contains "networks: an overlapping subnet is refused" "overlaps" "$out"
    out=$(timeout 10 $DK network create nwa 2>&1)
    contains "networks: an existing name is refused" "already exists" "$out"

    timeout 20 $DK run -d --name nw1 --network nwa --ip "$sub.10" --network-alias web \
        busybox httpd -f -p 80 -h /etc >/dev/null
    check "networks: run --network --ip --network-alias" [ $? = 0 ]
    id1=$(timeout 10 $DK inspect -f '{{.Id}}' nw1)
    out=$(timeout 10 $DK inspect -f '{{.NetworkSettings.Networks.nwa.IPAddress}} {{.NetworkSettings.Networks.nwa.Aliases}}' nw1)
    eq "networks: inspect shows the address and alias" "$sub.10 [web]" "$out"
    out=$(timeout 20 $DK run --rm --network nwa busybox sh -c "$(nw_get "$sub.10" 80)" 2>&1)
    contains "networks: a container reaches another on its network" "${id1:0:12}" "$out"
    timeout 20 $DK run --rm --network nwb busybox sh -c "$(nw_get "$sub.10" 80)" >/dev/null 2>&1
    check "networks: a container on another network cannot" [ $? != 0 ]
    out=$(timeout 20 $DK run --rm --network nwa busybox sh -c "$(nw_get web 80)" 2>&1)
    contains "networks: by alias through the embedded DNS" "${id1:0:12}" "$out"
    out=$(timeout 20 $DK run --rm --network nwa busybox nslookup nw1 2>&1)
    contains "networks: by name through the embedded DNS" "Address: $sub.10" "$out"
    timeout 20 $DK run --rm --network nwb busybox nslookup nw1 >/dev/null 2>&1
    check "networks: another network does not resolve the name" [ $? != 0 ]
    timeout 10 $DK network connect nwb nw1
    check "networks: connect a running container" [ $? = 0 ]
    ip=$(timeout 10 $DK inspect -f '{{.NetworkSettings.Networks.nwb.IPAddress}}' nw1)
    out=$(timeout 20 $DK run --rm --network nwb busybox sh -c "$(nw_get "$ip" 80)" 2>&1)
    contains "networks: reachable on the connected network" "${id1:0:12}" "$out"
    timeout 10 $DK network disconnect nwb nw1
    check "networks: disconnect" [ $? = 0 ]
    timeout 20 $DK run --rm --network nwb busybox sh -c "$(nw_get "$ip" 80)" >/dev/null 2>&1
    check "networks: unreachable after disconnect" [ $? != 0 ]
    out=$(timeout 10 $DK network rm nwa 2>&1)
    contains "networks: rm refused while a container is attached" "active endpoints" "$out"

    timeout 20 $DK run -d --name np1 -p 127.0.0.1::80 --expose 7000 -P busybox \
        sh -c 'nc -l -p 7000 -e cat & exec httpd -f -p 80 -h /etc' >/dev/null
    check "networks: run -p -P" [ $? = 0 ]
    out=$(timeout 10 $DK port np1 80/tcp)
    port=${out##*:}
    case "$out" in 127.0.0.1:[0-9]*) ok "networks: port ($out)" ;; *) fail "networks: port: [$out]" ;; esac
    out=$(timeout 10 $DK ps --filter name=np1 --format '{{.Ports}}')
    contains "networks: ps shows the ports" "127.0.0.1:$port->80/tcp" "$out"
    out=""
    for _ in $(seq 1 50); do
        out=$(curl -s --max-time 5 "http://127.0.0.1:$port/hostname") && break
        sleep 0.1
    done
    eq "networks: the published port serves on 127.0.0.1" "$(timeout 10 $DK inspect -f '{{slice .Id 0 12}}' np1)" "$out"
    out=$(timeout 10 $DK port np1 7000/tcp)
    local eport=${out##*:}
    # a connection held across a daemon kill -9 and restart
    rc=1
    for _ in $(seq 1 50); do
        if exec 3<>"/dev/tcp/127.0.0.1/$eport" 2>/dev/null; then rc=0; break; fi
        sleep 0.1
    done
    if [ $rc = 0 ]; then
        echo one >&3
        read -r -t 5 out <&3
        eq "networks: the -P port echoes" "one" "$out"
        # one that ends while the daemon is away: its lease, veth and namespace go at restart
        local gone
        gone=$(timeout 20 $DK run -d --network nwa busybox sleep 1)
        kill -KILL "$DAEMON_PID"
        wait "$DAEMON_PID" 2>/dev/null
        DAEMON_PID=
        start_daemon || { fail "networks: the daemon does not restart"; exec 3>&-; return; }
        echo two >&3
        out=""
        read -r -t 5 out <&3
        eq "networks: the connection survived a daemon kill -9" "two" "$out"
        exec 3>&- 3<&-
        sleep 1
        out=$(timeout 10 $DK inspect -f '{{.State.Status}} [{{.NetworkSettings.Networks.nwa.IPAddress}}]' "$gone")
        eq "networks: exited while the daemon was away: no lease" "exited []" "$out"
        left=""
        [ -d "/sys/class/net/vb${gone:0:9}0" ] && left="veth"
        [ -e "$RUN/netns/$gone" ] && left="$left netns"
        eq "networks: exited while the daemon was away: no veth or netns" "" "$left"
    else
        fail "networks: could not connect to the -P port $eport"
    fi
    out=$(curl -s --max-time 5 "http://127.0.0.1:$port/hostname")
    eq "networks: the published port after the restart" "$(timeout 10 $DK inspect -f '{{slice .Id 0 12}}' np1)" "$out"
    timeout 20 $DK run --rm -p "127.0.0.1:$port:80" busybox true >"$T/nw-busy.out" 2>&1
    contains "networks: a port in use is a clear error" "already allocated" "$(cat "$T/nw-busy.out")"

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
        pyout=$(timeout 120 "$PY" - "$sub" <<'PYEOF' 2>&1
import sys, docker
c = docker.from_env()
sub = sys.argv[1]
ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.249.%s.0/24" % sub.split(".")[2])])
n = c.networks.create("nwpy", driver="bridge", ipam=ipam, labels={"py": "1"})
assert n.attrs["IPAM"]["Config"][0]["Subnet"].startswith("10.249."), n.attrs
a = c.containers.run("busybox", ["httpd", "-f", "-p", "80", "-h", "/etc"], detach=True, network="nwpy",
                     ports={"80/tcp": ("127.0.0.1", None)}, name="nwpy1")
a.reload()
assert a.attrs["NetworkSettings"]["Networks"]["nwpy"]["IPAddress"].startswith("10.249."), a.attrs["NetworkSettings"]
assert a.ports["80/tcp"][0]["HostIp"] == "127.0.0.1", a.ports
n.reload()
assert a.id in n.attrs["Containers"], n.attrs
b = c.containers.create("busybox", ["true"], name="nwpy2")
n.connect(b, aliases=["bee"])
n.reload()
n.disconnect(b)
b.remove()
assert [x.name for x in c.networks.list(filters={"label": "py=1"})] == ["nwpy"]
a.remove(force=True)
n.remove()
print("ok   networks: python SDK create/run --network/ports/connect/disconnect/list/remove")
PYEOF
)
        case "$pyout" in *"ok   networks: python SDK"*) ok "networks: python SDK" ;; *) fail "networks: python SDK: $pyout" ;; esac
    else
        skip "networks: the Python docker SDK (made by the sdk scenario) is not there"
    fi

    # a namespace another container joined (--network container:X) outlives X's run: X's
    # veth, whose address X's stop releases, must go at that stop all the same
    timeout 30 $DK run -d --name nsown busybox sleep 1000 >/dev/null
    timeout 30 $DK run -d --name nsjoin --network container:nsown busybox sleep 1000 >/dev/null
    local own
    own=$(timeout 10 $DK inspect -f '{{.Id}}' nsown)
    out=$(timeout 10 $DK exec nsjoin ip -o link show eth0 2>&1 | grep -c 'eth0@')
    eq "networks: container:X shares X's eth0" "1" "$out"
    timeout 30 $DK stop -t 0 nsown >/dev/null
    out=$(timeout 10 $DK exec nsjoin ip -o link show eth0 2>&1 | grep -c 'eth0@')
    eq "networks: X's veth goes at X's stop though another container holds its namespace" "0" "$out"
    check "networks: and its host end with it" [ ! -d "/sys/class/net/vb${own:0:9}0" ]
    timeout 30 $DK rm -f nsjoin nsown >/dev/null

    # removal leaves nothing behind
    local ids
    ids=$(timeout 10 $DK ps -aq --no-trunc)
    [ -n "$ids" ] && timeout 60 $DK rm -f $ids >/dev/null
    local bridges
    bridges=$(timeout 10 $DK network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' nwa nwb)
    timeout 10 $DK network rm nwa nwb >/dev/null
    check "networks: rm" [ $? = 0 ]
    out=$(timeout 10 $DK network prune -f 2>&1)
    check "networks: prune" [ $? = 0 ]
    local b
    left=""
    for b in $bridges; do [ -d "/sys/class/net/$b" ] && left="$left $b"; done
    for id in $ids; do
        [ -d "/sys/class/net/vb${id:0:9}0" ] && left="$left vb${id:0:9}0"
    done
    eq "networks: no bridge or veth left" "" "$left"
    out=$(ls "$RUN/netns" 2>/dev/null | wc -l)
    eq "networks: no netns left" "0" "$out"
    out=$(nft list table ip "berth_$(printf %s "$DATA" | sha256sum | cut -c1-6)" 2>/dev/null | grep -c 'dnat to')
    eq "networks: no port rule left" "0" "$out"
}
