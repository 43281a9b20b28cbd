"""Scenario 2: the Python docker SDK against berth. Prints `ok NAME` or `FAIL NAME: why` per
check; exits non-zero if any failed.

    DOCKER_HOST=unix://... python3 sdk.py
"""
import sys
import time

import docker

failed = 0


def check(name, cond, why=""):
    global failed
    if cond:
        print("ok   sdk " + name)
    else:
        failed += 1
        print("FAIL sdk %s: %s" % (name, why))


def step(name, fn):
    global failed
    try:
        fn()
    except Exception as e:  # a client exception is a failed check, not a crash of the suite
        failed += 1
        print("FAIL sdk %s: %s: %s" % (name, type(e).__name__, e))


client = docker.from_env(version="auto", timeout=60)
tag = "accsdk%d" % int(time.time() * 1000 % 1000000)


def version():
    v = client.api.api_version
    check("api version negotiated", v.startswith("1.") and float(v[2:]) >= 41, v)
    check("ping", client.ping() is True)
    check("version", "ApiVersion" in client.version())


def run_fg():
    out = client.containers.run("busybox", ["sh", "-c", "echo from-sdk"], remove=True)
    check("containers.run(detach=False) output", out == b"from-sdk\n", repr(out))


def run_bg():
    c = client.containers.run(
        "busybox",
        ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; sleep 300"],
        detach=True,
        name=tag,
        labels={"acc": tag},
    )
    lines = []
    for chunk in c.logs(stream=True, follow=True):
        lines.extend(chunk.decode().splitlines())
        if len(lines) >= 3:
            break
    check("logs(stream=True)", lines[:3] == ["line1", "line2", "line3"], repr(lines))
    code, out = c.exec_run(["sh", "-c", "echo exec-out; exit 3"])
    check("exec_run", (code, out) == (3, b"exec-out\n"), repr((code, out)))
    found = client.containers.list(filters={"label": "acc=" + tag})
    check("containers.list(filters=label)", [x.id for x in found] == [c.id], repr(found))
    found = client.containers.list(filters={"name": tag, "status": "running"})
    check("containers.list(filters=name,status)", [x.id for x in found] == [c.id], repr(found))
    c.stop(timeout=1)
    r = c.wait(timeout=30)
    check("stop then wait", r.get("StatusCode") == 137, repr(r))
    c.reload()
    check("status after stop", c.status == "exited", c.status)
    c.remove()
    gone = client.containers.list(all=True, filters={"name": tag})
    check("remove", gone == [], repr(gone))


def wait_exit():
    c = client.containers.run("busybox", ["sh", "-c", "sleep 0.5; exit 12"], detach=True)
    r = c.wait(timeout=30)
    check("wait exit code", r.get("StatusCode") == 12, repr(r))
    c.remove(force=True)


def images():
    tags = [t for i in client.images.list() for t in i.tags]
    check("images.list", "busybox:latest" in tags, repr(tags))


def unknown_image():
    try:
        client.containers.create("nosuchimage:acc", ["true"])
        check("unknown image raises ImageNotFound", False, "no error")
    except docker.errors.ImageNotFound:
        check("unknown image raises ImageNotFound", True)


step("version", version)
step("run foreground", run_fg)
step("run detached", run_bg)
step("wait", wait_exit)
step("images", images)
step("unknown image", unknown_image)
sys.exit(1 if failed else 0)
