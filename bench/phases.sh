#!/bin/bash
# Where the milliseconds of `berth run --rm --network none busybox true` go: RUNS runs under a
# system-wide `perf record` of a few tracepoints (process fork, exec and exit; connect, clone3,
# pivot_root, seccomp), cheap enough not to change what they time (raw syscall tracing made a
# run 4 times slower). For each run, the milestones are taken relative to the exec of berth's
# CLI, and the median of each over the runs is printed: a timeline of one typical run, from the
# CLI's first request to its exit, across the CLI, the daemon, the zygote, the shim and the
# container's init.
#
#   [BERTH=path/to/berth] bench/phases.sh [RUNS]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
runs=${1:-30}

bench_install
command -v perf >/dev/null 2>&1 ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
bench_init
start_berth
echo "$(bench_context)"
cli=("$BERTH" -H "unix://$work/berth.sock" run --rm --network none busybox true)
for _ in $(seq 10); do "${cli[@]}"; done # warm up
perf record -q -o "$work/phases.data" -a \
  -e sched:sched_process_fork,sched:sched_process_exec,sched:sched_process_exit \
  -e syscalls:sys_enter_connect,syscalls:sys_enter_clone3 \
  -e syscalls:sys_enter_pivot_root,syscalls:sys_enter_seccomp -- \
  bash -c "for _ in \$(seq $runs); do $(printf '%q ' "${cli[@]}"); sleep 0.05; done" >/dev/null
perf script -i "$work/phases.data" -F comm,pid,time,event,trace 2>/dev/null >"$work/phases.txt"
python3 - "$BERTH" "$runs" "$work/phases.txt" <<'PY'
import re, statistics, sys

berth, runs = sys.argv[1], int(sys.argv[2])
# the zygote, the shim and the init before its exec carry the binary's name (15 characters)
me = berth.rsplit("/", 1)[-1][:15]
line = re.compile(r"\s*(.+?)\s+(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)")
done, cur = [], None
for text in open(sys.argv[3]):
    m = line.match(text)
    if not m:
        continue
    comm, pid, t, event, rest = m.groups()
    pid, t, event = int(pid), float(t) * 1000, event.split(":")[1]
    if event == "sched_process_exec" and f"filename={berth} " in rest + " ":
        cur = {"cli": pid, "t0": t, "connects": [], "forks": []}
        continue
    if cur is None:
        continue
    if event == "sys_enter_connect" and pid == cur["cli"]:
        cur["connects"].append(t)
    elif event == "sched_process_fork" and comm == me and pid != cur["cli"]:
        cur["forks"].append(t)
    elif event == "sys_enter_clone3" and comm == me:
        cur.setdefault("clone3", []).append(t)
    elif event == "sys_enter_pivot_root":
        cur.setdefault("pivot_root", t)
    elif event == "sys_enter_seccomp":
        cur.setdefault("seccomp", t)
    elif event == "sched_process_exec" and "filename=/bin/true" in rest:
        cur["exec"] = t
    elif event == "sched_process_exit" and comm == "true":
        cur["exit"] = t
    elif event == "sched_process_exit" and pid == cur["cli"]:
        cur["end"] = t
        done.append(cur)
        cur = None

# The CLI's requests: create, attach and wait (together), start. The shim is forked by the
# zygote after the start request; the init is the shim's last clone3 before pivot_root.
milestones = [
    ("CLI: first request (create)", lambda r: r["connects"][0]),
    ("CLI: start request", lambda r: r["connects"][-1]),
    ("zygote forks the shim", lambda r: next(f for f in r["forks"] if f > r["connects"][-1])),
    ("shim clones the init", lambda r: max(c for c in r["clone3"] if c < r["pivot_root"])),
    ("init: pivot_root", lambda r: r["pivot_root"]),
    ("init: seccomp filter", lambda r: r["seccomp"]),
    ("exec of the command", lambda r: r["exec"]),
    ("the command exits", lambda r: r["exit"]),
    ("CLI exits (container removed)", lambda r: r["end"]),
]
rows = []
for r in done:
    try:
        rows.append([f(r) - r["t0"] for _, f in milestones])
    except (KeyError, StopIteration, ValueError, IndexError):
        pass
print(f"`berth run --rm --network none busybox true`: {len(rows)} of {runs} runs traced whole;")
print("medians, from the exec of the CLI:")
for i, (name, _) in enumerate(milestones):
    at = statistics.median(row[i] for row in rows)
    step = statistics.median(row[i] - (row[i - 1] if i else 0.0) for row in rows)
    print(f"  {name:32} at {at:6.2f} ms   (+{step:5.2f})")
PY
