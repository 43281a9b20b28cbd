#!/bin/bash
# berth's whole test suite on a Debian 12 machine, as root: installs what the tests need,
# checks formatting and lints, runs every crate's unit and integration tests on this kernel,
# the cgroup v2 tests in a VM, and the interoperability scripts (docker, skopeo).
# CI runs exactly this (.ci/run).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

need=()
for p in busybox-static libseccomp-dev pkg-config gcc docker-registry apache2-utils skopeo \
         runc docker.io podman python3 python3-venv curl nftables iperf3; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's docker-registry package starts a registry on :5000 at install; the tests start
# their own on free ports, so the system one is not needed.
systemctl disable --now docker-registry >/dev/null 2>&1 || true

results=()
fail=0
logs=$(mktemp -d /tmp/berth-test-logs.XXXXXX)
n=0
# Each step's output goes to the terminal and to a log, so that the summary can count and
# show every skipped test (a skip prints "SKIP: <reason>") instead of letting it pass as a pass.
step() {
  local name=$1; shift
  n=$((n + 1))
  echo "=== test.sh: $name" >&2
  local t0=$SECONDS
  if (set -o pipefail; "$@" 2>&1 | tee "$logs/$n.log"); then
    results+=("ok    $(printf '%4ss' $((SECONDS - t0)))  $name")
  else
    results+=("FAIL  $(printf '%4ss' $((SECONDS - t0)))  $name"); fail=1
  fi
}

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
# --show-output: the SKIP lines of passing tests reach the log and the summary
step "cargo test (unit + integration on this kernel)" cargo test --workspace -- --show-output
# through a pipe: the VM tool re-opens its output, which would truncate a log file
vm_tests() { set -o pipefail; bash .ci/cgroup2-vm-tests 2>&1 | cat; }
step "cgroup v2 tests in a VM" vm_tests
step "engines: docker and podman drive berth-runtime" bash tests/engines.sh "$repo/target/debug/berth"
step "engine: the daemon with the docker CLIs, the Python SDK, crash, leak and bad input" \
  bash tests/engine/run.sh "$repo/target/debug/berth"
step "engine: restart policies and health checks (docker CLIs, Python SDK)" env ONLY=selfheal bash tests/engine/run.sh "$repo/target/debug/berth"
step "cli: berth's CLI beside the docker CLI against the berth daemon" \
  bash tests/cli/with-berth.sh "$repo/target/debug/berth"
step "interop: docker load/save" bash tests/interop-docker.sh "$repo/target/debug/berth"
step "interop: skopeo <-> registry" bash tests/registry/skopeo.sh "$repo/target/debug/berth"
step "interop: docker push/pull <-> berth through a registry" bash tests/registry/docker.sh "$repo/target/debug/berth"

echo
echo "=== test.sh summary"
printf '%s\n' "${results[@]}"
passed=$(printf '%s\n' "${results[@]}" | grep -c '^ok' || true)
failed=$(printf '%s\n' "${results[@]}" | grep -c '^FAIL' || true)
skips=$(cat "$logs"/*.log | grep -oE 'SKIP[^:]*:.*' | sed 's/[[:space:]]*$//' | sort | uniq -c || true)
nskip=$(cat "$logs"/*.log | grep -cE 'SKIP[^:]*:' || true)
echo "total: $((SECONDS / 60)) min $((SECONDS % 60)) s"
echo "steps: $passed passed, $failed failed; skipped tests: $nskip"
if [ -n "$skips" ]; then
  echo "skipped (count, reason):"
  echo "$skips"
fi
rm -rf "$logs"
exit $fail
