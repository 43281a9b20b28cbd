"""A minimal Docker Engine API client over a unix socket, for the engine benchmarks: it times
the daemon's side of `run --rm` (create, start, exit and removal) without any CLI's start-up,
and starts or removes many containers at once from concurrent connections.

  api_client.py run LABEL SOCK N [LABEL SOCK N ...]  # N x run --rm busybox true on each, in turn
  api_client.py burst-start SOCK COUNT    # COUNT x create+start of `sleep 3600`, all at once
  api_client.py burst-rm SOCK             # DELETE ?force=1 of every container, all at once
"""
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time

API = "/v1.41"


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=120):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def call(conn, method, path, body=None, ok=(200, 201, 204)):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, API + path, body=data, headers=headers)
    r = conn.getresponse()
    payload = r.read()
    if r.status not in ok:
        raise RuntimeError(f"{method} {path}: {r.status} {payload[:300]!r}")
    return json.loads(payload) if payload.strip() else None


def create_body(cmd, auto_remove):
    return {
        "Image": "busybox",
        "Cmd": cmd,
        "AttachStdout": False,
        "AttachStderr": False,
        # BENCH_NETWORK: bench/net.sh times the same phases on a bridge network
        "HostConfig": {"NetworkMode": os.environ.get("BENCH_NETWORK", "none"), "AutoRemove": auto_remove},
    }


def run_rm(sock):
    """One `run --rm busybox true` as the docker CLI does it, minus the attach (no output):
    create with AutoRemove, wait?condition=removed sent before start, start, the wait's
    answer. Returns the time of each phase in seconds."""
    c1, c2 = UnixConnection(sock), UnixConnection(sock)
    try:
        t0 = time.perf_counter()
        cid = call(c1, "POST", "/containers/create", create_body(["true"], True))["Id"]
        t1 = time.perf_counter()
        c2.request("POST", f"{API}/containers/{cid}/wait?condition=removed")
        call(c1, "POST", f"/containers/{cid}/start")
        t2 = time.perf_counter()
        r = c2.getresponse()
        body = r.read()
        t3 = time.perf_counter()
        if r.status != 200:
            raise RuntimeError(f"wait {cid}: {r.status} {body[:300]!r}")
        return t1 - t0, t2 - t1, t3 - t2
    finally:
        c1.close()
        c2.close()


def cmd_run(args):
    """LABEL SOCK N triples: N runs on each daemon in turn, then the medians of each phase and
    the ratio of the first daemon to the last."""
    daemons = [(args[i], args[i + 1], int(args[i + 2])) for i in range(0, len(args), 3)]
    n = max(k for _, _, k in daemons)
    times = {s: [] for _, s, _ in daemons}
    for _, s, _ in daemons:  # warm-up: first container, page cache, lazily built state
        run_rm(s)
    for i in range(n):
        for _, s, k in daemons:
            if i < k:
                times[s].append(run_rm(s))
    medians = []
    for label, s, _ in daemons:
        t = times[s]
        total = [sum(x) for x in t]
        ph = [statistics.median(p) * 1000 for p in zip(*t)]
        medians.append(statistics.median(total))
        print(f"  {label:14} median {medians[-1] * 1000:7.1f} ms  mean {statistics.mean(total) * 1000:7.1f} ms"
              f"  ({len(t)} runs; medians: create {ph[0]:.1f}, start {ph[1]:.1f},"
              f" exit and removal {ph[2]:.1f})")
    print(f"  ratio {daemons[0][0]}/{daemons[-1][0]}: median {medians[0] / medians[-1]:.3f}")


def cmd_burst_start(sock, count):
    """COUNT threads, each its own connection, released together: create, then start."""
    barrier = threading.Barrier(count + 1)
    errors = []

    def one(i):
        conn = UnixConnection(sock, timeout=600)
        try:
            barrier.wait()
            # named: a daemon's generated names may collide (berth's do, see RESULTS.md)
            cid = call(conn, "POST", f"/containers/create?name=burst-api-{i}",
                       create_body(["sleep", "3600"], False))["Id"]
            call(conn, "POST", f"/containers/{cid}/start")
        except Exception as e:  # reported below, counted as not running
            errors.append(str(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    running = len(call(UnixConnection(sock), "GET", "/containers/json"))
    print(json.dumps({"seconds": elapsed, "running": running, "errors": errors[:3],
                      "error_count": len(errors)}))


def cmd_burst_rm(sock):
    ids = [c["Id"] for c in call(UnixConnection(sock), "GET", "/containers/json?all=1")]
    barrier = threading.Barrier(len(ids) + 1)
    errors = []

    def one(cid):
        conn = UnixConnection(sock, timeout=600)
        try:
            barrier.wait()
            call(conn, "DELETE", f"/containers/{cid}?force=1")
        except Exception as e:
            errors.append(str(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    left = len(call(UnixConnection(sock), "GET", "/containers/json?all=1"))
    print(json.dumps({"seconds": elapsed, "removed": len(ids) - left, "left": left,
                      "errors": errors[:3], "error_count": len(errors)}))


def main():
    op, args = sys.argv[1], sys.argv[2:]
    if op == "run":
        cmd_run(args)
    elif op == "burst-start":
        cmd_burst_start(args[0], int(args[1]))
    elif op == "burst-rm":
        cmd_burst_rm(args[0])
    else:
        sys.exit(f"unknown operation {op}")


if __name__ == "__main__":
    main()
