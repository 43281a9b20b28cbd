#!/usr/bin/env python3
"""Runs a command on a fresh pseudo-terminal of ROWS x COLS, types INPUT into it (a line at a
time, waiting for the command to be ready), and prints what the terminal showed (CR removed)
followed by a final line `rc=N`. Used by cli.sh to drive `run -it` and `exec -it`.

    pty_run.py ROWS COLS INPUT -- CMD [ARG...]
"""
import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time


def main():
    rows, cols, typed = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out = b""
    pending = typed.encode().decode("unicode_escape").encode()
    start = time.monotonic()
    while True:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        elif pending:
            # the container's shell is reading once it has printed something and gone quiet;
            # one that printed its prompt before we came (attach) is reading after a second
            if out or time.monotonic() - start > 1.0:
                line, _, pending = pending.partition(b"\n")
                os.write(fd, line + b"\n")
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(out.decode(errors="replace").replace("\r", ""))
    sys.stdout.write("\nrc=%d\n" % os.waitstatus_to_exitcode(status))


main()
