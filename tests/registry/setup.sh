#!/bin/sh
# Installs what the registry tests need: Debian's docker-registry (distribution 2.8) as a
# real registry on 127.0.0.1, apache2-utils for htpasswd (basic auth), and skopeo for the
# interoperability script. Idempotent; CI runs it before `cargo test -p berth-registry`.
set -eu
need=""
command -v docker-registry >/dev/null 2>&1 || need="$need docker-registry"
command -v htpasswd >/dev/null 2>&1 || need="$need apache2-utils"
if [ "${WITH_SKOPEO:-0}" = 1 ]; then
    command -v skopeo >/dev/null 2>&1 || need="$need skopeo"
fi
if [ -n "$need" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    # shellcheck disable=SC2086
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $need
fi
# The package starts a registry service on :5000; the tests run their own on free ports.
if command -v systemctl >/dev/null 2>&1; then
    systemctl stop docker-registry >/dev/null 2>&1 || true
fi
exit 0
