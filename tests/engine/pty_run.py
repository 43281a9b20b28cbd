"""Runs a command on a real pty, types a line, checks that its output comes back, then types
`exit CODE` and checks the command's exit code.

    python3 pty_run.py CODE docker exec -it NAME sh
"""
import os
import pty
import select
import sys
import time


def read_until(fd, want, deadline):
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
        if want in buf:
            return buf, True
    return buf, False


def main():
    code = int(sys.argv[1])
    argv = sys.argv[2:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    deadline = time.monotonic() + 20
    # The typed line holds '""' so that its echo differs from the command's output.
    os.write(fd, b'echo pty""marker\n')
    buf, seen = read_until(fd, b"ptymarker", deadline)
    if not seen:
        print("no output through the pty: %r" % buf)
        os.kill(pid, 9)
        sys.exit(1)
    if b'pty""marker' not in buf:
        print("the typed line was not echoed: %r" % buf)
    os.write(fd, b"exit %d\n" % code)
    rest, _ = read_until(fd, b"\0never", time.monotonic() + 5)
    _, status = os.waitpid(pid, 0)
    got = os.waitstatus_to_exitcode(status)
    if got != code:
        print("exit code %d, want %d; output %r" % (got, code, buf + rest))
        sys.exit(1)
    if b'pty""marker' not in buf:
        sys.exit(1)


main()
