"""The Python docker SDK against berth: container.stats(stream=False), put_archive and
get_archive (with a hostile symlink in the container). Prints ok/FAIL lines for dayops.sh."""
import io
import os
import tarfile
import time

import docker

failures = 0


def check(name, cond, detail=""):
    global failures
    if cond:
        print(f"ok   sdk {name}")
    else:
        failures += 1
        print(f"FAIL sdk {name} {detail}")


client = docker.from_env(timeout=60)
marker = f"sdk-marker-{os.getpid()}"
c = client.containers.run(
    "busybox",
    ["sh", "-c", f"ln -s /etc /x; echo inside > /etc/{marker}; touch /ready; sleep 300"],
    detach=True,
)
try:
    for _ in range(100):
        if c.exec_run(["test", "-e", "/ready"]).exit_code == 0:
            break
        time.sleep(0.1)
    s = c.stats(stream=False)
    check("stats memory usage", s.get("memory_stats", {}).get("usage", 0) > 0, s.get("memory_stats"))
    check("stats cpu_stats", "total_usage" in s.get("cpu_stats", {}).get("cpu_usage", {}), s.get("cpu_stats"))
    check("stats precpu_stats", s.get("precpu_stats", {}).get("system_cpu_usage", 0) > 0, s.get("precpu_stats"))
    check("stats pids", s.get("pids_stats", {}).get("current", 0) >= 1, s.get("pids_stats"))

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"from the sdk\n"
        info = tarfile.TarInfo(f"{marker}-put")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    check("put_archive through /x", c.put_archive("/x", buf.getvalue()) is True)
    check("put_archive left the host's /etc alone", not os.path.exists(f"/etc/{marker}-put"))

    stream, stat = c.get_archive(f"/etc/{marker}-put")
    raw = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        got = t.extractfile(f"{marker}-put").read()
    check("get_archive content", got == b"from the sdk\n", got)
    check("get_archive stat name", stat.get("name") == f"{marker}-put", stat)

    stream, stat = c.get_archive(f"/x/{marker}")
    raw = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        got = t.extractfile(marker).read()
    check("get_archive through /x reads the container's /etc", got == b"inside\n", got)

    stream, stat = c.get_archive("/x")
    check("get_archive stat of the symlink", stat.get("linkTarget") == "/etc", stat)

    try:
        c.get_archive("/nonexistent")
        check("get_archive of a missing path is NotFound", False)
    except docker.errors.NotFound:
        check("get_archive of a missing path is NotFound", True)

    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as t:
        info = tarfile.TarInfo("../../../etc/sdk-evil")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    try:
        c.put_archive("/tmp", bad.getvalue())
        check("put_archive refuses ..", False)
    except docker.errors.APIError as e:
        check("put_archive refuses ..", e.status_code == 400, e)
finally:
    c.remove(force=True)
raise SystemExit(1 if failures else 0)
