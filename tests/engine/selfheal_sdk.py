"""Restart policies and health checks through the Python docker SDK, against the daemon at
DOCKER_HOST. Prints `ok NAME` / `FAIL NAME: why` per check; used by selfheal.sh."""
import os
import signal
import time

import docker

failed = 0
client = docker.from_env(version="auto", timeout=60)


def check(name, cond, why=""):
    global failed
    if cond:
        print("ok   sdk selfheal " + name)
    else:
        failed += 1
        print("FAIL sdk selfheal %s: %s" % (name, why))


def wait_for(c, pred, bound=60):
    """Reloads container c until pred(c.attrs) holds; False only if it never does."""
    end = time.time() + bound
    while time.time() < end:
        c.reload()
        if pred(c.attrs):
            return True
        time.sleep(0.1)
    return False


made = []
try:
    # a bad policy name: an APIError, nothing created
    try:
        client.containers.run("busybox", "true", detach=True, name="sdkbad",
                              restart_policy={"Name": "bogus"})
        check("bad restart policy refused", False, "created")
    except docker.errors.APIError as e:
        check("bad restart policy refused", e.status_code == 400 and "bogus" in str(e), str(e))
    check("nothing created for a bad policy",
          not client.containers.list(all=True, filters={"name": "sdkbad"}))

    c = client.containers.run("busybox", ["sh", "-c", "exec sleep 1000"], detach=True,
                              name="sdkalways", restart_policy={"Name": "always"})
    made.append(c)
    wait_for(c, lambda a: a["State"]["Running"])
    os.kill(c.attrs["State"]["Pid"], signal.SIGKILL)
    check("always restarts after kill -9",
          wait_for(c, lambda a: a["State"]["Running"] and a["RestartCount"] == 1),
          c.attrs["State"])
    c.update(restart_policy={"Name": "on-failure", "MaximumRetryCount": 1})
    c.reload()
    check("update restart_policy", c.attrs["HostConfig"]["RestartPolicy"] ==
          {"Name": "on-failure", "MaximumRetryCount": 1}, c.attrs["HostConfig"]["RestartPolicy"])

    h = client.containers.run(
        "busybox", ["sh", "-c", "touch /tmp/ok; exec sleep 1000"], detach=True, name="sdkhealth",
        healthcheck={"test": ["CMD", "cat", "/tmp/ok"], "interval": 300 * 10**6, "retries": 2})
    made.append(h)
    check("healthy", wait_for(h, lambda a: a["State"]["Health"]["Status"] == "healthy"),
          h.attrs["State"].get("Health"))
    h.exec_run(["rm", "/tmp/ok"])
    check("unhealthy", wait_for(h, lambda a: a["State"]["Health"]["Status"] == "unhealthy"),
          h.attrs["State"].get("Health"))
    log = h.attrs["State"]["Health"]["Log"]
    check("health log: at most five results with exit codes",
          0 < len(log) <= 5 and all("ExitCode" in r and "Output" in r for r in log), log)
    check("list filter health=unhealthy",
          [x.name for x in client.containers.list(filters={"health": "unhealthy"})] == ["sdkhealth"])
finally:
    for c in made:
        try:
            c.remove(force=True)
        except Exception:
            pass

raise SystemExit(1 if failed else 0)
