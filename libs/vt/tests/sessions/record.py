#!/usr/bin/env python3
"""Records what a full-screen program writes to its terminal, for the replay tests.

Usage: record.py OUT COLS ROWS KEYS -- COMMAND...

Runs COMMAND on a pseudo-terminal of COLS x ROWS (TERM=linux), types KEYS (Python string
escapes, `\\x1b` for Escape; each `~` pauses half a second), and writes every byte the
program sent to OUT. Cursor-position requests (ESC [ 6 n) are answered with the bottom-right
corner, the answer a terminal gives to a program that moved there with ESC [ 999;999 H to
learn the size. With NO_WINSZ=1 in the environment the pty reports a size of 0x0, so
programs that can (busybox vi) ask the terminal that way.
"""
import fcntl, os, pty, select, struct, sys, termios, time

def main():
    out, cols, rows, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    keys = keys.encode().decode("unicode_escape").encode("latin-1")
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "linux"
        os.execvp(cmd[0], cmd)
    size = (0, 0) if os.environ.get("NO_WINSZ") else (rows, cols)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    data = bytearray()

    def pump(seconds):
        end = time.time() + seconds
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return False
                if not chunk:
                    return False
                data.extend(chunk)
                if b"\x1b[6n" in chunk:
                    os.write(fd, b"\x1b[%d;%dR" % (rows, cols))
        return True

    pump(1.0)
    for k in keys:
        if k == ord("~"):
            if not pump(0.5):
                break
            continue
        os.write(fd, bytes([k]))
        pump(0.05)
    pump(1.0)
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    with open(out, "wb") as f:
        f.write(data)

main()
