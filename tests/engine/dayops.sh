# Scenario dayops: stats, update, cp (with a hostile symlink), export, diff, commit, system df
# and prune through the docker CLI (28.x and 20.10), berth's own CLI, and the Python SDK.
# Sourced by run.sh (its daemon, temp dir and cleanup trap).

# dk ARGS...: the client under test, never allowed to hang the suite
dk() { timeout 60 "$DK" "$@"; }

dayops_cgroup() { # ID V1CONTROLLER V1FILE V2FILE
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        cat "/sys/fs/cgroup/berth/$1/$4"
    else
        cat "/sys/fs/cgroup/$2/berth/$1/$3"
    fi
}

dayops_one() {
    local tag=$1 n=dayops$1$$ out id w
    w=$T/dayops-$tag
    mkdir -p "$w"
    id=$(dk run -d --name "$n" --label dayops=$tag busybox sh -c \
        "ln -s /etc /x; echo inside > /etc/marker-$n; touch /ready; sleep 300" 2>&1)
    eq "$tag dayops run -d" 64 "${#id}"
    local i
    for i in $(seq 1 100); do
        dk exec "$n" test -e /ready 2>/dev/null && break
        sleep 0.1
    done

    # stats
    out=$(dk stats --no-stream "$n" 2>&1)
    contains "$tag stats --no-stream header" "MEM USAGE / LIMIT" "$out"
    contains "$tag stats --no-stream row" "$n" "$out"
    out=$(dk stats --no-stream --format '{{.Name}} {{.PIDs}}' "$n" 2>&1)
    eq "$tag stats --format PIDs = pids.current" "$n $(dayops_cgroup "$id" pids pids.current pids.current)" "$out"

    # update
    out=$(dk update --memory 64m --memory-swap 128m --pids-limit 40 --cpu-shares 512 "$n" 2>&1)
    eq "$tag update prints the container" "$n" "$out"
    eq "$tag update memory in the cgroup" 67108864 "$(dayops_cgroup "$id" memory memory.limit_in_bytes memory.max)"
    eq "$tag update pids in the cgroup" 40 "$(dayops_cgroup "$id" pids pids.max pids.max)"
    eq "$tag update in inspect" "67108864 40" "$(dk inspect -f '{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}' "$n" 2>&1)"
    dk update --memory 1k "$n" >/dev/null 2>&1
    eq "$tag update below the minimum fails" 1 $?

    # cp through a container symlink to /etc: the container's, never the host's
    echo host-side >"$w/f-$n"
    out=$(dk cp "$w/f-$n" "$n:/x/" 2>&1)
    eq "$tag cp to container through /x" "" "$out"
    check "$tag cp to container did not touch the host's /etc" test ! -e "/etc/f-$n"
    dk cp "$n:/etc/f-$n" "$w/back" 2>/dev/null
    eq "$tag cp back" host-side "$(cat "$w/back" 2>&1)"
    dk cp "$n:/x/marker-$n" "$w/m" 2>/dev/null
    eq "$tag cp from container through /x" inside "$(cat "$w/m" 2>&1)"
    check "$tag cp from container: host /etc untouched" test ! -e "/etc/marker-$n"
    dk cp "$n:/x" "$w/xlink" 2>/dev/null
    check "$tag cp of a symlink copies the link" test -L "$w/xlink"
    eq "$tag cp of a symlink keeps its target" /etc "$(readlink "$w/xlink")"
    dk cp -L "$n:/x" "$w/xdir" 2>/dev/null
    check "$tag cp -L follows inside the container" test -f "$w/xdir/marker-$n"
    dk cp "$n:/etc" "$w/etc" 2>/dev/null
    check "$tag cp a directory" test -f "$w/etc/passwd"
    dk cp "$w/f-$n" "$n:/tmp/renamed" 2>/dev/null
    eq "$tag cp to a new name in the container" host-side "$(dk exec "$n" cat /tmp/renamed 2>&1)"
    mkdir -p "$w/tree/sub" && echo deep >"$w/tree/sub/file"
    dk cp "$w/tree" "$n:/tmp/" 2>/dev/null
    eq "$tag cp a directory into the container" deep "$(dk exec "$n" cat /tmp/tree/sub/file 2>&1)"
    dk cp "$n:/nonexistent" "$w/none" >/dev/null 2>&1
    eq "$tag cp a missing path fails" 1 $?

    # diff, export
    out=$(dk diff "$n" 2>&1)
    contains "$tag diff added symlink" "A /x" "$out"
    contains "$tag diff changed /etc" "C /etc" "$out"
    contains "$tag diff added file" "A /etc/marker-$n" "$out"
    dk export -o "$w/exp.tar" "$n" 2>/dev/null
    contains "$tag export has the file" "etc/marker-$n" "$(tar tf "$w/exp.tar" 2>&1)"

    # commit: the image runs and keeps the change
    out=$(dk commit -c "CMD [\"cat\", \"/etc/marker-$n\"]" -m "from $tag" "$n" "dayops-$tag:v1" 2>&1)
    contains "$tag commit prints the image id" "sha256:" "$out"
    out=$(dk run --rm "dayops-$tag:v1" 2>&1)
    eq "$tag committed image runs with the change" inside "$out"

    # system df
    out=$(dk system df 2>&1)
    contains "$tag system df images" "Images" "$out"
    contains "$tag system df volumes" "Local Volumes" "$out"
    out=$(dk system df -v 2>&1)
    contains "$tag system df -v lists the container" "$n" "$out"

    # prune filters: only the labelled stopped container goes
    dk create --name "$n-keep" --label dayops=keep busybox true >/dev/null 2>&1
    dk create --name "$n-go" --label dayops=go$tag busybox true >/dev/null 2>&1
    dk container prune -f --filter "label=dayops=go$tag" >/dev/null 2>&1
    eq "$tag container prune --filter label" "$n-keep" "$(dk ps -a --filter name="$n-" --format '{{.Names}}' 2>&1)"
    dk container prune -f --filter 'label!=dayops=keep' --filter until=2001-01-01T00:00:00Z >/dev/null 2>&1
    eq "$tag container prune --filter until (nothing that old)" "$n-keep" "$(dk ps -a --filter name="$n-" --format '{{.Names}}' 2>&1)"

    dk rm -f "$n" "$n-keep" >/dev/null 2>&1
    dk rmi "dayops-$tag:v1" >/dev/null 2>&1
}

scenario_dayops() {
    echo "# scenario dayops"
    local DK
    DK=$DOCKER28
    dayops_one d28
    if [ -x "$DOCKER20" ]; then
        DK=$DOCKER20
        dayops_one d20
    else
        skip "Debian's docker 20.10 client ($DOCKER20) is not installed"
    fi
    # berth's own CLI, the same checks
    printf '#!/bin/sh\nexec "%s" -H "unix://%s" "$@"\n' "$BERTH" "$SOCK" >"$T/berth-cli"
    chmod +x "$T/berth-cli"
    DK=$T/berth-cli
    dayops_one berth
    out=$(dk system prune -f --volumes 2>&1)
    contains "berth system prune --volumes (tolerates a daemon without volumes)" "Total reclaimed space" "$out"

    # the Python SDK
    local PY=
    if python3 -c 'import docker' 2>/dev/null; then
        PY=python3
    elif [ -x "$T/venv/bin/python3" ] && "$T/venv/bin/python3" -c 'import docker' 2>/dev/null; then
        PY=$T/venv/bin/python3
    else
        python3 -m venv "$T/venv" >/dev/null 2>&1 && "$T/venv/bin/pip" install -q docker >/dev/null 2>&1
        "$T/venv/bin/python3" -c 'import docker' 2>/dev/null && PY=$T/venv/bin/python3
    fi
    if [ -z "$PY" ]; then
        skip "the Python docker SDK is not installed and pip install docker failed"
        return
    fi
    local line
    while IFS= read -r line; do
        case "$line" in
            "ok   "*) ok "${line#ok   }" ;;
            "FAIL "*) fail "${line#FAIL }" ;;
            *) echo "     $line" ;;
        esac
    done < <(timeout 120 "$PY" "$HERE/dayops_sdk.py" 2>&1; echo "exit $?")
}
