#!/bin/bash
# Build berth's release binary as a static executable (glibc and libseccomp linked in) and
# print its path on stdout. `berth runtime run` starts the binary twice (once more for the
# protective re-exec), and a static binary starts ~0.7 ms faster each time: no dynamic
# loader, no shared libraries to map and relocate, a fifth fewer page faults (perf stat,
# bench/RESULTS.md). Needs libc6-dev and libseccomp-dev for their .a files. The target is
# named explicitly so that the static flag reaches berth, not the build scripts and
# proc-macros cargo builds for the host.
# Not position-independent (relocation-model=static), as runc and containerd-shim ship: a
# static PIE relocates its read-only data at every start, which makes ~500 KiB of it private
# to each process; with one `berth shim` per container that was 901 KiB per idle container,
# 383 KiB without (bench/density.sh, bench/RESULTS.md). The price: berth's own code and data
# are not address-randomised (heap, stack and mmaps still are).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
triple=$(rustc -vV | sed -n 's/^host: //p')
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/$(gcc -print-multiarch) \
  RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
  cargo build --release -p berth --target "$triple" --target-dir "${CARGO_TARGET_DIR:-target}/static" >&2
echo "$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/static/$triple/release/berth"
