#!/bin/bash
# berth's CLI side by side with the docker CLI, against one daemon: each scenario runs the
# same command line through `berth -H HOST` and `docker -H HOST`, and their stdout, stderr
# (where docker's words are berth's) and exit codes must match. Prints `ok NAME` or
# `FAIL NAME` with a diff per scenario, and exits 1 if any failed.
#
#   tests/cli/cli.sh unix:///run/berth/berth.sock busybox
#
# HOST is the daemon's socket, IMAGE an image it has whose rootfs is busybox (sh, echo, cat,
# sleep, printenv, id, pwd; tests/make-busybox-rootfs.sh makes one). BERTH is the berth
# binary (default: target/debug/berth of this checkout); DOCKER the docker CLI (default:
# docker on PATH). Containers are named cli-PID-*; all are removed on exit, also on failure.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 unix:///path/to/daemon.sock IMAGE" >&2
    exit 2
fi
HOST=$1
IMG=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BERTH=${BERTH:-${CARGO_TARGET_DIR:-$root/target}/debug/berth}
DOCKER=${DOCKER:-docker}
P=cli-$$
work=$(mktemp -d)
failures=0

if [ ! -x "$BERTH" ]; then
    echo "FAIL setup: berth binary $BERTH not found (build it: cargo build -p berth)" >&2
    exit 1
fi
if ! command -v "$DOCKER" >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL setup: no docker CLI on PATH" >&2
        exit 1
    fi
    echo "SKIP: no docker CLI on PATH to compare with"
    exit 0
fi
if ! "$DOCKER" -H "$HOST" version >/dev/null 2>&1; then
    echo "FAIL setup: no daemon answers at $HOST" >&2
    exit 1
fi

cleanup() {
    local ids
    ids=$("$DOCKER" -H "$HOST" ps -aq --filter "name=$P-" 2>/dev/null)
    [ -n "$ids" ] && "$DOCKER" -H "$HOST" rm -f $ids >/dev/null 2>&1
    ids=$("$DOCKER" -H "$HOST" network ls -q --filter "name=$P-" 2>/dev/null)
    [ -n "$ids" ] && "$DOCKER" -H "$HOST" network rm $ids >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

b() { "$BERTH" -H "$HOST" "$@"; }
d() { "$DOCKER" -H "$HOST" "$@"; }

# Runs "$@" once per CLI; `@` in an argument becomes the side's container-name prefix
# ($P-b or $P-d), and in the output it becomes `@` again, so both sides compare equal.
# WHAT says what must match: any of out, err, err1 (stderr's first line), rc.
pair() {
    local name=$1 what=$2 stdin=$3
    shift 3
    local side cli
    for side in b d; do
        local args=()
        local a
        for a in "$@"; do args+=("${a//@/$P-$side}"); done
        if [ "$side" = b ]; then cli=b; else cli=d; fi
        if [ -n "$stdin" ]; then
            printf '%b' "$stdin" | $cli "${args[@]}" >"$work/$side.out" 2>"$work/$side.err"
        else
            $cli "${args[@]}" </dev/null >"$work/$side.out" 2>"$work/$side.err"
        fi
        echo "rc=$?" >"$work/$side.rc"
        # (the two sides run a moment apart: "12 seconds ago" and "13 seconds ago" are alike)
        sed -i -e "s/$P-[bd]/@/g" -e 's/[0-9a-f]\{64\}/<id>/g' -e 's/[0-9]\+ seconds ago/N seconds ago/g' \
            "$work/$side.out" "$work/$side.err"
        # PAIR_FILTER: a command the output goes through first (e.g. drop what differs by side)
        if [ -n "${PAIR_FILTER:-}" ]; then
            $PAIR_FILTER <"$work/$side.out" >"$work/$side.filtered" && mv "$work/$side.filtered" "$work/$side.out"
        fi
        # the first line of stderr, for errors whose later lines name the program
        head -n 1 "$work/$side.err" | sed 's/^\(docker\|berth\): //' >"$work/$side.err1"
    done
    compare "$name" "$what"
}

# Compares $work/{b,d}.{out,err,rc} for the parts named in WHAT.
compare() {
    local name=$1 what=$2 part bad=0
    for part in $what; do
        if ! diff -u "$work/d.$part" "$work/b.$part" >"$work/diff.$part"; then
            bad=1
        fi
    done
    if [ $bad = 0 ]; then
        echo "ok $name"
    else
        echo "FAIL $name"
        for part in $what; do
            sed "s/^/    $part: /" "$work/diff.$part"
        done
        echo "    berth stderr: $(head -c 500 "$work/b.err")"
        failures=$((failures + 1))
    fi
}

# Both sides' output of the last pair holds TEXT (where the two agreeing is not enough: a
# daemon bug shows on both).
expect() {
    local name=$1 text=$2
    if grep -qF -- "$text" "$work/b.out" && grep -qF -- "$text" "$work/d.out"; then
        echo "ok $name"
    else
        echo "FAIL $name: no \"$text\" in: $(tail -c 300 "$work/b.out")"
        failures=$((failures + 1))
    fi
}

# Both CLIs make the same container (named @-NAME) for the scenarios that follow.
both() {
    local side
    for side in b d; do
        local args=()
        local a
        for a in "$@"; do args+=("${a//@/$P-$side}"); done
        $side "${args[@]}" >/dev/null 2>"$work/setup.err" || {
            echo "FAIL setup ($side): $* : $(cat "$work/setup.err")"
            failures=$((failures + 1))
        }
    done
}

# --- run in the foreground: output, streams, exit codes
pair "run echo" "out err rc" "" run --rm "$IMG" echo hello world
pair "run stdout and stderr apart" "out err rc" "" run --rm "$IMG" sh -c 'echo to-out; echo to-err >&2'
pair "run exit code N" "out rc" "" run --rm "$IMG" sh -c 'exit 42'
pair "run 127 command not found" "out rc" "" run --rm "$IMG" no-such-command
pair "run 126 not executable" "out rc" "" run --rm "$IMG" /etc/passwd
pair "run 125 unknown flag" "out rc" "" run --no-such-flag "$IMG" true
pair "run 125 bad value" "out rc" "" run --memory lots "$IMG" true
pair "run 125 no such network" "out rc" "" run --rm --network no-such-net "$IMG" true
pair "run pulls a missing image" "out err1 rc" "" run --rm 127.0.0.1:1/no-such-image true
pair "run 125 bind source missing" "out err1 rc" "" run --rm -v /no/such/dir/x:/x "$IMG" true
pair "run -i stdin" "out rc" "line one\nline two\n" run --rm -i "$IMG" cat
pair "run -i stdin keeps ctrl-p ctrl-q bytes" "out rc" "a\0020\0021b\n" run --rm -i "$IMG" od -c
pair "run -e -w -u --entrypoint -h" "out rc" "" run --rm -e A=1 -e B="two words" -w /tmp -u 1000:1000 -h boxname --entrypoint sh "$IMG" -c 'printenv A B; pwd; id -u; id -g; hostname'
pair "run --env-file" "out rc" "" run --rm --env-file "$here/fixtures/env" "$IMG" sh -c 'printenv FROM_FILE SPACED EMPTY HOME; env | grep -c NOT_SET_IN; echo end'
pair "run --name then rm" "out rc" "" run --name @-named "$IMG" echo named
pair "rm a stopped container" "out err rc" "" rm @-named
pair "run --rm leaves nothing" "out rc" "" ps -a --filter name=@-named --format '{{.Names}}'
pair "run -a stderr only" "out err rc" "" run --rm -a stderr "$IMG" sh -c 'echo hidden; echo shown >&2'

# --- the create request: every flag must reach the daemon as docker's CLI sends it
both create --name @-cfgq --cpu-period 100000 --cpu-quota 50000 "$IMG" true
pair "create --cpu-period --cpu-quota" "out err rc" "" inspect --format '{{.HostConfig.CpuPeriod}} {{.HostConfig.CpuQuota}} {{.HostConfig.NanoCpus}}' @-cfgq
both create --name @-ns --uts host --userns host --cgroupns private --privileged --network none --ipc shareable "$IMG" true
pair "create namespace flags" "out err rc" "" inspect --format '{{.HostConfig.UTSMode}} {{.HostConfig.UsernsMode}} {{.HostConfig.CgroupnsMode}} {{.HostConfig.Privileged}} {{.HostConfig.NetworkMode}} {{.HostConfig.IpcMode}}' @-ns
both create --name @-cfg --cpus 1.5 -m 64m --memory-reservation 32m --memory-swap 128m \
    --cpu-shares 512 --cpuset-cpus 0 --pids-limit 100 \
    --blkio-weight 300 --shm-size 32m --ulimit nofile=1024:2048 --ulimit nproc=500 \
    --cap-add NET_ADMIN --cap-drop MKNOD --security-opt no-new-privileges --read-only \
    --tmpfs /run:size=1m --restart on-failure:3 --stop-signal SIGUSR1 --stop-timeout 7 \
    --init -l a=b --label-file "$here/fixtures/labels" -e X=1 -w /srv -u nobody \
    --hostname hn --group-add 10 --device /dev/null:/dev/xnull:r --oom-kill-disable \
    --log-driver json-file --log-opt max-size=1m -v /tmp:/host-tmp:ro -v /anon \
    --mount type=tmpfs,target=/scratch,tmpfs-size=1048576 --ipc private --pid host \
    --device-read-bps /dev/null:1mb --device-write-iops /dev/null:100 --sysctl kernel.msgmax=8192 \
    "$IMG" sh -c 'echo cfg'
cfg='{{.Name}}|{{.Config.Image}}|{{.Config.Cmd}}|{{.Config.Env}}|{{.Config.WorkingDir}}|{{.Config.User}}|{{.Config.Hostname}}|{{.Config.Labels}}|{{.Config.StopSignal}}|{{.Config.StopTimeout}}|{{.Config.Tty}}|{{.Config.OpenStdin}}|{{.Config.AttachStdout}}|{{range $k, $v := .Config.Volumes}}{{$k}}{{end}}'
host='{{.HostConfig.NanoCpus}}|{{.HostConfig.Memory}}|{{.HostConfig.MemoryReservation}}|{{.HostConfig.MemorySwap}}|{{.HostConfig.CpuShares}}|{{.HostConfig.CpuPeriod}}|{{.HostConfig.CpuQuota}}|{{.HostConfig.CpusetCpus}}|{{.HostConfig.PidsLimit}}|{{.HostConfig.BlkioWeight}}|{{.HostConfig.ShmSize}}|{{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}} {{end}}|{{.HostConfig.CapAdd}}|{{.HostConfig.CapDrop}}|{{.HostConfig.SecurityOpt}}|{{.HostConfig.ReadonlyRootfs}}|{{.HostConfig.Tmpfs}}|{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}|{{.HostConfig.Init}}|{{.HostConfig.GroupAdd}}|{{range .HostConfig.Devices}}{{.PathOnHost}}>{{.PathInContainer}}:{{.CgroupPermissions}}{{end}}|{{.HostConfig.OomKillDisable}}|{{.HostConfig.LogConfig.Type}}{{.HostConfig.LogConfig.Config}}|{{.HostConfig.Binds}}|{{range .HostConfig.Mounts}}{{.Type}}:{{.Target}}{{end}}|{{.HostConfig.IpcMode}}|{{.HostConfig.PidMode}}|{{range .HostConfig.BlkioDeviceReadBps}}{{.Path}}={{.Rate}}{{end}}|{{range .HostConfig.BlkioDeviceWriteIOps}}{{.Path}}={{.Rate}}{{end}}|{{.HostConfig.Sysctls}}|{{.HostConfig.AutoRemove}}|{{.HostConfig.NetworkMode}}'
pair "create maps Config as docker" "out err rc" "" inspect --format "$cfg" @-cfg
pair "create maps HostConfig as docker" "out err rc" "" inspect --format "$host" @-cfg
pair "start -a of a container that cannot start" "out err1 rc" "" start -a @-cfg
both create --name @-sa "$IMG" sh -c 'echo started; echo on-err >&2; exit 3'
pair "start -a" "out err rc" "" start -a @-sa
pair "start" "out err rc" "" start @-sa
pair "inspect after exit" "out rc" "" inspect --format '{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}' @-cfg

# --- inspect sends unset fields as dockerd does (null or empty, not absent): the wanted lines
# are what docker 28 prints against Debian's dockerd for the same containers.
both create --name @-plain "$IMG" sh
both create --name @-ep -e A=1 -l x=y --entrypoint /bin/sh "$IMG" -c true
unset_fmt='{{.Config.Entrypoint}}|{{json .Config.Entrypoint}}|{{json .HostConfig.CapAdd}}|{{json .HostConfig.CapDrop}}|{{json .Config.Env}}|{{.Config.Cmd}}|{{json .Mounts}}|{{json .ExecIDs}}|{{json .Config.Volumes}}|{{json .HostConfig.PidsLimit}}|{{json .HostConfig.MemorySwappiness}}|{{json .HostConfig.Binds}}|{{json .State.Health}}|{{json .NetworkSettings.SecondaryIPAddresses}}'
pair "inspect of unset fields" "out err rc" "" inspect --format "$unset_fmt" @-plain @-ep
want_unset() {
    local name=$1 want=$2 got
    got=$(d inspect --format "$unset_fmt" "$name" 2>&1)
    if [ "$got" = "$want" ]; then
        echo "ok docker prints dockerd's unset fields for $3"
    else
        echo "FAIL docker prints dockerd's unset fields for $3"
        echo "    want: $want"
        echo "    got:  $got"
        failures=$((failures + 1))
    fi
}
want_unset $P-d-plain '[]|null|null|null|null|[sh]|[]|null|null|null|null|null|null|null' "a plain container"
want_unset $P-d-ep '[/bin/sh]|["/bin/sh"]|null|null|["A=1"]|[-c true]|[]|null|null|null|null|null|null|null' "-e -l --entrypoint"

# --- a reader that goes away: no panic, nothing on stderr, exit 0 or 141 (SIGPIPE) as docker
both run --name @-many "$IMG" sh -c 'i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done'
closed_pipe() {
    local name=$1
    shift
    b "$@" 2>"$work/pipe.err" | true
    local rc=${PIPESTATUS[0]}
    if { [ "$rc" = 0 ] || [ "$rc" = 141 ]; } && [ ! -s "$work/pipe.err" ]; then
        echo "ok closed pipe: $name"
    else
        echo "FAIL closed pipe: $name (rc=$rc, stderr: $(head -c 300 "$work/pipe.err"))"
        failures=$((failures + 1))
    fi
}
closed_pipe "logs" logs $P-b-many
closed_pipe "inspect" inspect $P-b-many $P-b-plain $P-b-ep
closed_pipe "ps" ps -a
closed_pipe "images" images

# --- detached containers: logs, exec, ps, lifecycle
both run -d --name @-bg -l role=bg "$IMG" sh -c 'echo one; echo two >&2; echo three; exec sleep 600'
pair "exec exit code" "out err rc" "" exec @-bg sh -c 'echo in-exec; exit 4'
pair "logs stdout and stderr apart" "out err rc" "" logs @-bg
both run --name @-logs "$IMG" sh -c 'echo a; echo b; echo c'
pair "logs --tail 2" "out err rc" "" logs --tail 2 @-logs
pair "logs --since --until" "out err rc" "" logs --since 2000-01-01T00:00:00Z --until 1h @-logs
both run -d --name @-follow "$IMG" sh -c 'echo first; sleep 1; echo second >&2; echo third'
pair "logs -f until the container exits" "out err rc" "" logs -f @-follow
pair "logs -f of an exited container" "out err rc" "" logs -f @-logs
pair "exec -e -w -u" "out err rc" "" exec -e FOO=bar -w /tmp -u 1000 @-bg sh -c 'printenv FOO; pwd; id -u'
pair "exec -i stdin" "out rc" "from stdin\n" exec -i @-bg cat
pair "exec 126/127" "out rc" "" exec @-bg no-such-command
pair "exec -d" "out err rc" "" exec -d @-bg sleep 1
pair "exec into a missing container" "out err rc" "" exec @-missing true
pair "exec -it without a terminal" "out err rc" "" exec -it @-bg true
pair "exec -it into a missing container without a terminal" "out err rc" "" exec -it @-missing true
pair "run -it without a terminal" "out err1 rc" "" run -it --rm "$IMG" true
pair "rename a missing container" "out err rc" "" rename @-missing @-other
pair "logs of a missing container" "out err rc" "" logs @-missing
pair "start a missing container" "out err rc" "" start @-missing
pair "wait for a missing container" "out err rc" "" wait @-missing
pair "ps --format" "out err rc" "" ps --filter name=@-bg --format '{{.Names}}|{{.Image}}|{{.Command}}|{{.State}}|{{.Labels}}|{{.Ports}}'
pair "ps --format table" "out err rc" "" ps --filter name=@-bg --format 'table {{.Names}}\t{{.Image}}\t{{.State}}'
pair "ps -s" "out err rc" "" ps -s --filter name=@-bg --format '{{.Names}} {{.Size}}'
pair "ps --format json keys" "rc" "" ps --filter name=@-bg --format json
pair "ps -q -f label=" "rc" "" ps -q --filter label=role=bg --filter name=@-bg
pair "ps --format funcs" "out err rc" "" ps --filter name=@-bg --format '{{upper .State}} {{lower "ABC"}} {{printf "%s/%s" .Image .State}} {{json .Names}} {{join (split .Labels "=") "+"}}'
# docker's template gaps: the .Label method, Go's printing, functions, json, table
pair "ps .Label method" "out err rc" "" ps --filter name=@-bg --format '{{.Label "role"}}|{{.Label "none"}}|{{.Labels}}|{{if eq (.Label "role") "bg"}}is-bg{{end}}'
pair "ps table with .Label" "out err rc" "" ps --filter name=@-bg --format 'table {{.Names}}\t{{.Label "role"}}'
pair "ps funcs title pad truncate split" "out err rc" "" ps --filter name=@-bg --format '{{title .State}}|{{pad .State 1 2}}|{{truncate .Names 5}}|{{split .Labels "="}}|{{len (split .Labels "=")}}'
# each side's container has its own ID and times: those keys are dropped before comparing
sidefree() { python3 -c 'import json,sys
for l in sys.stdin:
    v = json.loads(l)
    for k in ("ID", "CreatedAt", "RunningFor", "Status"):
        v.pop(k, None)
    print(json.dumps(v, sort_keys=True))'; }
PAIR_FILTER=sidefree pair "ps --format json" "out err rc" "" ps --filter name=@-bg --format json
PAIR_FILTER=sidefree pair "ps --format {{json .}}" "out err rc" "" ps --filter name=@-bg --format '{{json .}}'
pair "images --format json" "out err rc" "" images --format json "$IMG"
pair "images --format {{json .}}" "out err rc" "" images --format '{{json .}}' "$IMG"
pair "images --format table" "out err rc" "" images --format 'table {{.Repository}}\t{{.Tag}}\t{{.VirtualSize}}\t{{.Digest}}' "$IMG"
pair "images --format funcs" "out err rc" "" images --format '{{upper .Repository}} {{json .Digest}} {{truncate .ID 4}}' "$IMG"
pair "image inspect" "out err rc" "" image inspect "$IMG"
pair "image inspect --format json" "out err rc" "" image inspect --format json "$IMG"
pair "image inspect --format" "out err rc" "" image inspect --format '{{.Architecture}} {{json .RepoTags}} {{.Os}} {{.RootFS.Type}}' "$IMG"
pair "image inspect: null lists and maps as Go prints them" "out err rc" "" image inspect --format '{{.Config.Cmd}}|{{.Config.Entrypoint}}|{{.Config.Volumes}}|{{.Config.Labels}}|{{.Config.Env}}|{{.Config.OnBuild}}|{{json .Config.Cmd}}' "$IMG"
pair "inspect of an image: null lists as Go prints them" "out err rc" "" inspect --format '{{.Config.Cmd}}|{{.Config.Labels}}|{{.RepoDigests}}' "$IMG"
pair "inspect --format json of an image" "out err rc" "" inspect --format json "$IMG"
pair "history --format json" "out err rc" "" history --format json "$IMG"
pair "history --format table" "out err rc" "" history --format 'table {{.ID}}\t{{.CreatedBy}}\t{{.Size}}' "$IMG"
pair "inspect --format index/json" "out err rc" "" inspect --format '{{json .Config.Labels}} {{index .Config.Cmd 0}} {{len .Config.Cmd}} {{.Config.Labels.role}} {{index .Config.Labels "role"}}' @-bg
pair "inspect --type container" "out rc" "" inspect --type container --format '{{.Name}}' @-bg
pair "inspect JSON of an image as the daemon sent it" "out err rc" "" inspect "$IMG"
pair "inspect JSON of a container as the daemon sent it" "out err rc" "" inspect $P-b-logs $P-b-bg
pair "inspect --type image" "out err rc" "" inspect --type image --format '{{.Id}} {{.RepoTags}}' "$IMG"
pair "inspect -s" "out err rc" "" inspect -s --format '{{.SizeRw}} {{.SizeRootFs}}' $P-b-logs
pair "inspect a missing object" "out rc" "" inspect @-missing
pair "top" "rc" "" top @-bg
pair "pause" "out err rc" "" pause @-bg
pair "ps status=paused" "out rc" "" ps --filter name=@-bg --filter status=paused --format '{{.Names}} {{.State}}'
pair "unpause" "out err rc" "" unpause @-bg
pair "rename" "out err rc" "" rename @-bg @-bg2
pair "container ls alias" "out rc" "" container ls --filter name=@-bg2 --format '{{.Names}}'
pair "kill -s" "out err rc" "" kill -s KILL @-bg2
pair "wait exited" "out err rc" "" wait @-bg2
pair "ps -a exited=137" "out rc" "" ps -a --filter name=@-bg2 --filter exited=137 --format '{{.Names}} {{.State}}'
pair "restart -t" "out err rc" "" restart -t 1 @-bg2
pair "stop -t" "out err rc" "" stop -t 1 @-bg2
pair "rm -f running" "out err rc" "" rm -f @-bg2
pair "rm a missing container" "out rc" "" rm @-bg2
pair "container prune -f" "rc" "" container prune -f --filter label=never-set-$$

# --- restart policies and health checks
both run -d --name @-hc --restart on-failure:3 --health-cmd true --health-interval 1s "$IMG" sleep 1000
pair "run --restart --health-cmd: inspect" "out rc" "" inspect -f '{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}} {{index .Config.Healthcheck.Test 0}} {{index .Config.Healthcheck.Test 1}}' @-hc
pair "update --restart" "out err rc" "" update --restart always @-hc
pair "update --restart bogus" "out rc" "" update --restart bogus @-hc
pair "run --no-healthcheck with --health-cmd" "out err1 rc" "" run --rm --no-healthcheck --health-cmd true "$IMG" true
pair "run --health-interval without a unit" "out err1 rc" "" run --rm --health-interval 3 "$IMG" true
pair "rm -f a container with a health check" "out err rc" "" rm -f @-hc

# --- signals: without a tty, the CLI passes what it receives on to the container
for side in b d; do
    cli=$BERTH
    [ "$side" = d ] && cli=$DOCKER
    "$cli" -H "$HOST" run --rm --name "$P-$side-sig" "$IMG" \
        sh -c 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.1; done' \
        >"$work/$side.out" 2>"$work/$side.err" &
    cli_pid=$!
    # the trap is set once the container has said so
    for _ in $(seq 1 600); do grep -q ready "$work/$side.out" && break; sleep 0.1; done
    kill -TERM $cli_pid
    wait $cli_pid
    echo "rc=$?" >"$work/$side.rc"
done
compare "run --sig-proxy forwards SIGTERM" "out rc"

# --- the rest of the day (tests/cli/dayops-pairs.sh)
. "$here/dayops-pairs.sh"

# --- a real terminal: -it through a pty, input typed, exit code, terminal restored after
tty_pair() {
    local name=$1 typed=$2
    shift 2
    local side
    for side in b d; do
        local args=()
        local a
        for a in "$@"; do args+=("${a//@/$P-$side}"); done
        local cli=$BERTH
        [ "$side" = d ] && cli=$DOCKER
        local line
        line=$(printf '%q ' "$cli" -H "$HOST" "${args[@]}")
        timeout 60 python3 "$here/pty_run.py" 30 100 "$typed" -- \
            sh -c "$line; echo inner-rc=\$?; stty -a | grep -o -- '-\\?icanon'" \
            >"$work/$side.out" 2>"$work/$side.err"
        echo "rc=$?" >"$work/$side.rc"
        # what a shell draws depends on when the window size arrives (it redraws its prompt
        # on SIGWINCH): compare the text without escape sequences and repeated prompts
        sed -i -e "s/$P-$side/@/g" -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's@^\(/ # \)*@@' "$work/$side.out"
    done
    compare "$name" "out rc"
}
if command -v python3 >/dev/null 2>&1; then
    tty_pair "run -it through a pty" 'echo typed-$((6*7))\nexit 6\n' run -it --rm "$IMG" sh
    tty_pair "run -t exit code, no stdin" '' run -t --rm "$IMG" sh -c 'tty; exit 5'
    both run -d --name @-tty "$IMG" sleep 600
    tty_pair "exec -it through a pty" 'echo in-exec-tty\nexit 3\n' exec -it @-tty sh
    tty_pair "run -it detach keys" '\x10\x11' run -it --name @-det "$IMG" sh
    pair "detached container still runs" "out rc" "" ps --filter name=@-det --format '{{.Names}} {{.State}}'
    tty_pair "attach -it" 'echo attached\nexit 2\n' attach @-det
    expect "attach -it typed into the detached shell" "inner-rc=2"
    pair "attach ended the container" "out rc" "" inspect --format '{{.State.Status}} {{.State.ExitCode}}' @-det
    expect "attach ended the container: exited 2" "exited 2"
    tty_pair "run -it --detach-keys" 'ctrl-x\x18\n' run -it --rm --name @-dk --detach-keys ctrl-x "$IMG" sh -c 'read line; echo got $line; exit 9'
    # load on a terminal draws the daemon's per-layer progress, then the result (a new
    # layer: one that is already stored is not loaded again, so it shows no progress)
    head -c 300000 /dev/urandom >"$work/rand" && tar -C "$work" -cf "$work/layer.tar" rand
    b import "$work/layer.tar" "$P-load:1" >/dev/null && b save -o "$work/img.tar" "$P-load:1" &&
        b rmi "$P-load:1" >/dev/null
    timeout 60 python3 "$here/pty_run.py" 30 100 '' -- "$BERTH" -H "$HOST" load -i "$work/img.tar" \
        >"$work/load.out" 2>&1
    if grep -q ': Loading layer \[=*' "$work/load.out" && grep -q "Loaded image: $P-load:1" "$work/load.out"; then
        echo "ok load draws Loading layer progress on a terminal"
    else
        echo "FAIL load draws Loading layer progress on a terminal: $(tail -c 300 "$work/load.out")"
        failures=$((failures + 1))
    fi
    b rmi "$P-load:1" >/dev/null 2>&1
else
    echo "SKIP: -it scenarios: no python3 for a pty"
    [ "${CI:-}" = true ] && failures=$((failures + 1))
fi

# --- networks and ports
pair "network create" "out err rc" "" network create --label cli=1 @-net
pair "network ls --filter --format" "out err rc" "" network ls --filter name=@-net --format '{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}}'
pair "network inspect --format" "out err rc" "" network inspect -f '{{.Name}} {{.Driver}} {{.Internal}} {{.Labels}}' @-net
both run -d --name @-pub --network @-net --network-alias web -p 127.0.0.1::80 "$IMG" sleep 60
pair "run --network --network-alias" "out err rc" "" inspect -f '{{index .NetworkSettings.Networks "@-net" | printf "%v" | len | printf "%d" | len}} {{(index .NetworkSettings.Networks "@-net").Aliases}}' @-pub
pair "port not published" "out err rc" "" port @-pub 81
pair "network rm while attached" "out err1 rc" "" network rm @-net
pair "network disconnect" "out err rc" "" network disconnect @-net @-pub
pair "network rm" "out err rc" "" network rm @-net
pair "network rm missing" "out err rc" "" network rm @-net

# --- the daemon is not there
b() { "$BERTH" -H unix:///nonexistent/berth.sock "$@"; }
b ps >"$work/b.out" 2>"$work/b.err"
rc=$?
if [ $rc = 125 ] && grep -q "cannot connect to the berth daemon at unix:///nonexistent/berth.sock: is it running? (start it with: berth daemon)" "$work/b.err" && [ "$(wc -l <"$work/b.err")" = 1 ]; then
    echo "ok no daemon: one line, exit 125"
else
    echo "FAIL no daemon: one line, exit 125 (rc=$rc, stderr: $(cat "$work/b.err"))"
    failures=$((failures + 1))
fi

if [ $failures -gt 0 ]; then
    echo "$failures scenario(s) failed"
    exit 1
fi
echo "all scenarios passed"
