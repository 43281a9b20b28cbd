#!/bin/sh
# Makes a minimal busybox root filesystem in DIR from Debian's busybox-static: /bin/busybox,
# a symlink per applet (/bin/sh, /bin/ls, ...), and the directories and files a container
# expects (/etc/passwd, /etc/group, /tmp, /proc, /sys, /dev, ...). Installs busybox-static
# with apt-get if it is missing. Used by berth's image, runtime and registry tests.
#
#   tests/make-busybox-rootfs.sh DIR          # make the rootfs in DIR (created if needed)
#   tests/make-busybox-rootfs.sh DIR out.tar  # also pack it as a tarball (for `berth import`)
set -eu

if [ $# -lt 1 ]; then
    echo "usage: $0 DIR [TARBALL]" >&2
    exit 2
fi
dir=$1
tarball=${2:-}

bb=/bin/busybox
# Debian's plain `busybox` package also installs /bin/busybox, but linked dynamically: it
# would not run in a rootfs without libc, so the static package is required
if ! dpkg -s busybox-static >/dev/null 2>&1; then
    echo "installing busybox-static" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >&2
fi
[ -x "$bb" ] || { echo "$0: $bb not found after installing busybox-static" >&2; exit 1; }

mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin etc root tmp proc sys dev var/tmp home
chmod 1777 tmp var/tmp
chmod 700 root
cp "$bb" bin/busybox
chmod 755 bin/busybox
# one relative symlink per applet, in /bin (busybox --list gives bare names)
for applet in $(bin/busybox --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "bin/$applet"
done
cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > etc/group <<'G'
root:x:0:
nogroup:x:65534:
G
echo "berth-busybox" > etc/hostname
: > etc/hosts
: > etc/resolv.conf
# fixed times, so the same script gives the same tarball (and the same image ID)
find . -exec touch -h -d '2024-01-01 00:00:00 UTC' {} +

if [ -n "$tarball" ]; then
    case "$tarball" in /*) ;; *) tarball="$OLDPWD/$tarball" ;; esac
    tar --numeric-owner --owner=0 --group=0 --sort=name --mtime='2024-01-01 00:00:00 UTC' \
        -cf "$tarball" .
fi
