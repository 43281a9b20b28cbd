#!/bin/bash
# Networking, berth against Debian's docker.io on the same machine (bench/common.sh starts both
# privately; dockerd with --bridge=none --iptables=false as in the other benches, so its user
# network has no NAT or filtering rules; berth's has its nftables table). Root only.
#
#  a. the network's cost on a start: hyperfine of `run --rm busybox true` on a user bridge
#     network, on berth's default bridge, and with --network none, for each engine; the
#     difference of the medians is what the network adds (issue 15's goal: at most 3 ms).
#  b. container-to-container TCP throughput on a user network: iperf3 (Debian's) run by the
#     host in each container's network namespace (nsenter --net=<SandboxKey>): the packets
#     take exactly the containers' path (veth, bridge, veth, and the engine's rules), and the
#     same binary runs for both engines. IPERF_SECS seconds, one stream.
#  c. TCP connect latency container to container on a user network: CONNECTS connect()s from
#     one container's namespace to a listener in another's (both the host's python3 under
#     nsenter: busybox has no such client, and a forking server such as busybox httpd drops
#     SYNs under load, which would time its backlog instead); the time of connect() alone
#     (the handshake through both veths and the bridge), median and 99th percentile.
#
#   [ROUNDS=3] [IPERF_SECS=5] [CONNECTS=2000] [BERTH=path/to/berth] bench/net.sh [RUNS-PER-ROUND]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
runs=${1:-20}
rounds=${ROUNDS:-3}
secs=${IPERF_SECS:-5}
connects=${CONNECTS:-2000}

for p in iperf3 util-linux; do
  dpkg -s "$p" >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq "$p" >/dev/null
  }
done
bench_install
bench_init
# the user networks go before the daemons stop (dockerd would keep its bridge)
net_cleanup() {
  local rc=$?
  set +e
  for c in bcli dcli; do
    [ -n "$berth_pid" ] || [ "$c" = dcli ] || continue
    [ -n "$docker_pid" ] || [ "$c" = bcli ] || continue
    $c rm -f srv cli >/dev/null 2>&1
    $c network rm benchnet >/dev/null 2>&1
  done
  (exit $rc)
  bench_cleanup
}
trap net_cleanup EXIT
start_berth
start_docker
echo "$(bench_context)"

# the same user network on both, subnets of their own
bcli network create --subnet 10.231.0.0/24 benchnet >/dev/null
dcli network create --subnet 10.232.0.0/24 benchnet >/dev/null

names=()
cmds=()
add() { names+=("$1"); cmds+=("$2"); }
add "berth none" "$DOCKER_CLI -H unix://$work/berth.sock run --rm --network none busybox true"
add "berth bridge (default)" "$DOCKER_CLI -H unix://$work/berth.sock run --rm busybox true"
add "berth user network" "$DOCKER_CLI -H unix://$work/berth.sock run --rm --network benchnet busybox true"
add "docker none" "$DOCKER_CLI -H unix://$work/docker.sock run --rm --network none busybox true"
add "docker user network" "$DOCKER_CLI -H unix://$work/docker.sock run --rm --network benchnet busybox true"
for i in "${!cmds[@]}"; do
  timeout 120 ${cmds[$i]} || { echo "${names[$i]}: \`${cmds[$i]}\` failed" >&2; exit 1; }
done
for r in $(seq "$rounds"); do
  args=()
  for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
  hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/hf-$r.json" "${args[@]}" >/dev/null
done
python3 - "${names[@]}" -- "$work"/hf-*.json <<'PY'
import json, statistics, sys
sep = sys.argv.index("--")
names, files = sys.argv[1:sep], sys.argv[sep + 1:]
t = {}
for f in files:
    for x in json.load(open(f))["results"]:
        t.setdefault(x["command"], []).extend(x["times"])
med = {n: statistics.median(t[n]) * 1000 for n in names}
print(f"a. run --rm busybox true, hyperfine, {len(files)} rounds (docker CLI 28 for both):")
for n in names:
    print(f"  {n:24} median {med[n]:7.1f} ms  mean {statistics.mean(t[n])*1000:7.1f} ms  ({len(t[n])} runs)")
b_def = med["berth bridge (default)"] - med["berth none"]
b_usr = med["berth user network"] - med["berth none"]
d_usr = med["docker user network"] - med["docker none"]
print(f"  network's added cost: berth {b_usr:.1f} ms (user network), {b_def:.1f} ms (default bridge);"
      f" docker {d_usr:.1f} ms (user network)")
if d_usr > 0:
    print(f"  ratio berth/docker of the added cost: {b_usr / d_usr:.3f}; of the whole bridged run: "
          f"{med['berth user network'] / med['docker user network']:.3f}")
print("  (goal, issue 15: the network adds at most 3 ms to a start)")
PY

# b and c: two long-running containers per engine on benchnet
sandbox() { "$DOCKER_CLI" -H "unix://$1" inspect -f '{{.NetworkSettings.SandboxKey}}' "$2"; }
ipof() { "$DOCKER_CLI" -H "unix://$1" inspect -f '{{(index .NetworkSettings.Networks "benchnet").IPAddress}}' "$2"; }
for eng in berth docker; do
  sock=$work/$eng.sock
  "$DOCKER_CLI" -H "unix://$sock" run -d --name srv --network benchnet busybox sleep 3600 >/dev/null
  "$DOCKER_CLI" -H "unix://$sock" run -d --name cli --network benchnet busybox sleep 3600 >/dev/null
  srv_ns=$(sandbox "$sock" srv)
  cli_ns=$(sandbox "$sock" cli)
  srv_ip=$(ipof "$sock" srv)
  nsenter --net="$srv_ns" iperf3 -s -D -1 -p 5201 --pidfile "$work/iperf-$eng.pid"
  nsenter --net="$srv_ns" python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5000))
s.listen(4096)
while True:
    s.accept()[0].close()
' &
  acceptor=$!
  sleep 0.3
  nsenter --net="$cli_ns" iperf3 -c "$srv_ip" -p 5201 -t "$secs" -J >"$work/iperf-$eng.json"
  nsenter --net="$cli_ns" python3 - "$srv_ip" 5000 "$connects" >"$work/connect-$eng.txt" <<'PY'
import socket, statistics, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ts = []
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    t0 = time.perf_counter()
    s.connect((ip, port))
    ts.append(time.perf_counter() - t0)
    s.close()
ts.sort()
print(f"{statistics.median(ts)*1e6:.1f} {ts[int(len(ts)*0.99)]*1e6:.1f} {statistics.mean(ts)*1e6:.1f}")
PY
  kill "$acceptor"
  wait "$acceptor" 2>/dev/null || true
  "$DOCKER_CLI" -H "unix://$sock" rm -f srv cli >/dev/null
done
python3 - "$work" "$secs" "$connects" <<'PY'
import json, sys
work, secs, n = sys.argv[1], sys.argv[2], sys.argv[3]
bps, lat = {}, {}
for e in ("berth", "docker"):
    j = json.load(open(f"{work}/iperf-{e}.json"))
    bps[e] = j["end"]["sum_received"]["bits_per_second"] / 1e9
    lat[e] = [float(x) for x in open(f"{work}/connect-{e}.txt").read().split()]
print(f"b. TCP throughput container to container on a user network (iperf3, {secs} s, 1 stream):")
for e in bps:
    print(f"  {e:7} {bps[e]:7.2f} Gbit/s")
print(f"  ratio berth/docker: {bps['berth'] / bps['docker']:.3f}")
print(f"c. TCP connect() latency container to container on a user network ({n} connects):")
for e in lat:
    print(f"  {e:7} median {lat[e][0]:6.1f} us  p99 {lat[e][1]:6.1f} us  mean {lat[e][2]:6.1f} us")
print(f"  ratio berth/docker (median): {lat['berth'][0] / lat['docker'][0]:.3f}")
PY
