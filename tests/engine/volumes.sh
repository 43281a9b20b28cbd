# Scenario: volumes through the docker CLIs (28 on PATH, 20.10 at /usr/bin/docker when
# installed) and the Python docker SDK: volume create/ls/inspect/rm/prune, run -v name:/data
# writing a file, rm -f, a new container sees it; --mount forms, --volumes-from, rm -v; a
# bad name and a missing --mount bind source refused with nothing created; kill -9 of the
# daemon and a restart keep every volume's data. Sourced by run.sh (its daemon, temp dir,
# helpers and cleanup trap).

# vol_cli NAME DOCKER: the volume commands and the volume mount forms with one docker CLI
vol_cli() {
    local n=$1 D=$2 out id
    local v="vol${n}a" w="vol${n}b"
    out=$(timeout 30 "$D" volume create --label team=db --opt type=tmpfs --opt device=tmpfs \
        --opt o=size=4m "$w" 2>&1)
    eq "volumes $n: volume create with --opt and --label prints the name" "$w" "$out"
    out=$(timeout 30 "$D" volume create "$v" 2>&1)
    eq "volumes $n: volume create NAME" "$v" "$out"
    out=$(timeout 10 "$D" volume ls --format '{{.Driver}} {{.Name}}' | grep -E " vol${n}[ab]$" | sort | tr '\n' ,)
    eq "volumes $n: volume ls" "local $v,local $w," "$out"
    out=$(timeout 10 "$D" volume ls | head -1 | tr -s ' ')
    eq "volumes $n: volume ls header" "DRIVER VOLUME NAME" "$out"
    out=$(timeout 10 "$D" volume ls -q --filter label=team=db | grep "^vol$n" | tr '\n' ,)
    eq "volumes $n: volume ls -q --filter label=team=db" "$w," "$out"
    out=$(timeout 10 "$D" volume inspect --format '{{.Name}} {{.Driver}} {{.Scope}} {{.Mountpoint}} {{.Options.type}} {{index .Labels "team"}}' "$w" 2>&1)
    eq "volumes $n: volume inspect" "$w local local $DATA/volumes/$w/_data tmpfs db" "$out"

    # run -v name:/data writes; rm -f; a new container sees it; so does the host directory
    timeout 60 "$D" run -d --name "vc$n" -v "$v:/data" busybox \
        sh -c 'echo written-by-1 > /data/f; sleep 300' >/dev/null 2>&1
    sleep 0.5
    out=$(timeout 30 "$D" inspect --format '{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}' "vc$n" 2>&1)
    eq "volumes $n: inspect Mounts" "volume $v /data true" "$out"
    out=$(timeout 30 "$D" volume rm "$v" 2>&1)
    contains "volumes $n: volume rm of a volume in use is refused naming the container" "vc$n" "$out"
    timeout 30 "$D" rm -f "vc$n" >/dev/null 2>&1
    out=$(timeout 60 "$D" run --rm -v "$v:/data" busybox cat /data/f 2>&1)
    eq "volumes $n: a new container sees the file after rm -f" "written-by-1" "$out"
    eq "volumes $n: the file is in the volume's directory" "written-by-1" "$(cat "$DATA/volumes/$v/_data/f" 2>&1)"
    out=$(timeout 60 "$D" run --rm -v "$w:/t" busybox sh -c "grep ' /t ' /proc/mounts | cut -d' ' -f3" 2>&1)
    eq "volumes $n: a type=tmpfs volume is a tmpfs" "tmpfs" "$out"

    # --mount forms, read-only, --volumes-from, -v /path (anonymous), rm -v
    out=$(timeout 60 "$D" run --rm --mount "type=volume,src=$v,dst=/m,readonly" busybox \
        sh -c 'cat /m/f; touch /m/x 2>/dev/null || echo ro' 2>&1 | tr '\n' ,)
    eq "volumes $n: --mount type=volume,readonly" "written-by-1,ro," "$out"
    out=$(timeout 60 "$D" run --rm --mount "type=volume,src=vo$n,dst=/o,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=2m" \
        busybox sh -c "grep ' /o ' /proc/mounts | cut -d' ' -f3" 2>&1)
    eq "volumes $n: --mount volume-opt= makes a tmpfs volume" "tmpfs" "$out"
    out=$(timeout 10 "$D" volume inspect --format '{{.Options.type}}' "vo$n" 2>&1)
    eq "volumes $n: ... with its options" "tmpfs" "$out"
    out=$(timeout 60 "$D" run --rm --mount type=tmpfs,dst=/tt,tmpfs-size=1m busybox \
        sh -c "grep ' /tt ' /proc/mounts | cut -d' ' -f3" 2>&1)
    eq "volumes $n: --mount type=tmpfs" "tmpfs" "$out"
    mkdir -p "$T/bind$n" && echo host > "$T/bind$n/h"
    out=$(timeout 60 "$D" run --rm --mount "type=bind,src=$T/bind$n,dst=/b" busybox cat /b/h 2>&1)
    eq "volumes $n: --mount type=bind" "host" "$out"
    local before
    before=$(timeout 10 "$D" ps -aq | wc -l)
    out=$(timeout 60 "$D" create --mount "type=bind,src=$T/absent$n,dst=/b" busybox true 2>&1)
    contains "volumes $n: --mount bind with a missing source is refused" "bind source path does not exist" "$out"
    eq "volumes $n: ... and nothing is created" "$before" "$(timeout 10 "$D" ps -aq | wc -l)"
    check "volumes $n: ... not even the source" test ! -e "$T/absent$n"
    out=$(timeout 60 "$D" run --rm -v "$T/made$n/sub:/b" busybox sh -c 'echo x > /b/y && echo done' 2>&1)
    eq "volumes $n: -v creates a missing bind source" "done" "$out"
    check "volumes $n: ... on the host" test -f "$T/made$n/sub/y"
    out=$(timeout 60 "$D" volume create "bad/name$n" 2>&1)
    contains "volumes $n: a volume name with / is refused" "invalid characters" "$out"
    out=$(timeout 60 "$D" volume create "../up$n" 2>&1)
    contains "volumes $n: a volume name with .. is refused" "invalid characters" "$out"
    # (the CLIs turn a -v source starting with . into an absolute bind: a / is what reaches
    # the daemon as a bad name)
    out=$(timeout 60 "$D" run --rm -v "bad/up$n:/x" busybox true 2>&1)
    contains "volumes $n: -v with a bad volume name is refused" "invalid characters" "$out"
    check "volumes $n: ... and nothing is created" test ! -e "$DATA/volumes/bad" -a ! -e "$DATA/up$n"
    timeout 60 "$D" run --name "va$n" -v /anon -v "$v:/named" busybox sh -c 'echo a > /anon/f' >/dev/null 2>&1
    out=$(timeout 60 "$D" run --rm --volumes-from "va$n:ro" busybox sh -c 'cat /anon/f /named/f; touch /anon/z 2>/dev/null || echo ro' 2>&1 | tr '\n' ,)
    eq "volumes $n: --volumes-from :ro" "a,written-by-1,ro," "$out"
    local anon
    anon=$(timeout 10 "$D" inspect --format '{{range .Mounts}}{{if eq .Destination "/anon"}}{{.Name}}{{end}}{{end}}' "va$n" 2>&1)
    check "volumes $n: -v /anon made an anonymous volume" test -d "$DATA/volumes/$anon/_data"
    timeout 30 "$D" rm -v "va$n" >/dev/null 2>&1
    check "volumes $n: rm -v removes the anonymous volume" test ! -e "$DATA/volumes/$anon"
    check "volumes $n: ... and keeps the named one" test -f "$DATA/volumes/$v/_data/f"
    local nvol
    nvol=$(ls "$DATA/volumes" | wc -l)
    timeout 60 "$D" run --rm -v /gone busybox true >/dev/null 2>&1
    eq "volumes $n: run --rm takes its anonymous volume with it" "$nvol" "$(ls "$DATA/volumes" | wc -l)"

    # prune: -a removes unused named volumes, never one in use
    timeout 30 "$D" volume create "vp$n" >/dev/null 2>&1
    timeout 60 "$D" create --name "vk$n" -v "$v:/data" busybox true >/dev/null 2>&1
    # 20.10 speaks API 1.41, where prune takes every unused volume; 23+ needs -a for named ones
    local all=-a
    [ "$n" = 20 ] && all=
    out=$(timeout 30 "$D" volume prune $all -f 2>&1)
    contains "volumes $n: volume prune $all removes an unused named volume" "vp$n" "$out"
    contains "volumes $n: ... and the unused tmpfs one" "$w" "$out"
    check "volumes $n: ... and keeps the one in use" test -f "$DATA/volumes/$v/_data/f"
    timeout 30 "$D" rm -f "vk$n" >/dev/null 2>&1
    out=$(timeout 30 "$D" volume rm "$v" 2>&1)
    eq "volumes $n: volume rm" "$v" "$out"
    out=$(timeout 30 "$D" volume inspect "$v" 2>&1)
    contains "volumes $n: volume inspect of a removed volume" "o such volume" "$out"
}

vol_sdk() {
    local PY=python3
    if ! python3 -c 'import docker' 2>/dev/null; then
        if [ ! -x "$T/venv/bin/python3" ]; then
            python3 -m venv "$T/venv" >/dev/null 2>&1 && "$T/venv/bin/pip" install -q docker >/dev/null 2>&1
        fi
        if [ -x "$T/venv/bin/python3" ] && "$T/venv/bin/python3" -c 'import docker' 2>/dev/null; then
            PY=$T/venv/bin/python3
        else
            skip "volumes: the Python docker SDK is not installed and pip install docker failed"
            return
        fi
    fi
    local line
    while IFS= read -r line; do
        case "$line" in
            "ok   "*) ok "${line#ok   }" ;;
            "FAIL "*) fail "${line#FAIL }" ;;
            *) echo "     $line" ;;
        esac
    done < <(DATA="$DATA" timeout 120 "$PY" - 2>&1 <<'EOF'; echo "exit $?"
import os
import docker

c = docker.from_env(version="auto", timeout=60)
def check(name, cond, why=""):
    print(("ok   volumes sdk %s" % name) if cond else ("FAIL volumes sdk %s: %s" % (name, why)))
try:
    v = c.volumes.create(name="sdkvol", labels={"k": "v"})
    check("create", v.name == "sdkvol" and v.attrs["Driver"] == "local", v.attrs)
    check("list", "sdkvol" in [x.name for x in c.volumes.list(filters={"label": "k=v"})])
    check("get", c.volumes.get("sdkvol").attrs["Mountpoint"].endswith("/volumes/sdkvol/_data"))
    out = c.containers.run("busybox", ["sh", "-c", "echo from-sdk > /d/f"], volumes={"sdkvol": {"bind": "/d", "mode": "rw"}}, remove=True)
    out = c.containers.run("busybox", ["cat", "/d/f"], volumes=["sdkvol:/d:ro"], remove=True)
    check("a second container reads the first one's file", out.strip() == b"from-sdk", out)
    ct = c.containers.create("busybox", "true", volumes=["sdkvol:/d"])
    try:
        v.remove()
        check("remove in use refused", False, "removed")
    except docker.errors.APIError as e:
        check("remove in use refused with 409", e.status_code == 409, e)
    ct.remove()
    try:
        c.volumes.create(name="../x")
        check("bad name refused", False, "created")
    except docker.errors.APIError as e:
        check("bad name refused with 400", e.status_code == 400, e)
    v.remove()
    try:
        c.volumes.get("sdkvol")
        check("removed", False, "still there")
    except docker.errors.NotFound:
        check("removed", True)
    r = c.volumes.prune()
    check("prune answers", "VolumesDeleted" in r, r)
except Exception as e:
    check("unexpected error", False, "%s: %s" % (type(e).__name__, e))
EOF
)
}

scenario_volumes() {
    echo "# scenario volumes"
    vol_cli 28 "$DOCKER28"
    if [ -x "$DOCKER20" ] && "$DOCKER20" --version 2>/dev/null | grep -q ' 20\.10'; then
        vol_cli 20 "$DOCKER20"
    else
        skip "volumes: Debian's docker 20.10 client is not installed at $DOCKER20"
    fi
    # berth's own CLI, the same checks
    printf '#!/bin/sh\nexec "%s" -H "unix://%s" "$@"\n' "$BERTH" "$SOCK" >"$T/berth-cli"
    chmod +x "$T/berth-cli"
    vol_cli berth "$T/berth-cli"
    vol_sdk

    # the data outlives a kill -9 of the daemon: a running container writing to its volume,
    # an idle volume; both intact and usable by the new daemon
    local out
    timeout 30 "$DOCKER28" volume create keepme >/dev/null 2>&1
    timeout 60 "$DOCKER28" run --rm -v keepme:/k busybox sh -c 'echo kept > /k/f' >/dev/null 2>&1
    timeout 60 "$DOCKER28" run -d --name vkill -v live:/l busybox \
        sh -c 'echo live > /l/f; sync; sleep 300' >/dev/null 2>&1
    sleep 0.5
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
    if ! start_daemon; then
        fail "volumes: the daemon does not start after kill -9"
        return
    fi
    out=$(timeout 10 "$DOCKER28" volume ls -q | grep -E '^(keepme|live)$' | sort | tr '\n' ,)
    eq "volumes: both volumes listed after kill -9 and restart" "keepme,live," "$out"
    out=$(timeout 30 "$DOCKER28" volume rm live 2>&1)
    contains "volumes: still in use by the running container after the restart" "vkill" "$out"
    timeout 30 "$DOCKER28" rm -f vkill >/dev/null 2>&1
    out=$(timeout 60 "$DOCKER28" run --rm -v keepme:/k -v live:/l busybox cat /k/f /l/f 2>&1 | tr '\n' ,)
    eq "volumes: data intact after kill -9 and restart" "kept,live," "$out"
    out=$(timeout 30 "$DOCKER28" volume rm keepme live 2>&1 | tr '\n' ,)
    eq "volumes: removed at the end" "keepme,live," "$out"
    local left
    left=$(timeout 10 "$DOCKER28" ps -aq)
    [ -n "$left" ] && timeout 30 "$DOCKER28" rm -f $left >/dev/null 2>&1
}
