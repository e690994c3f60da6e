"""Run a command in a pseudo-terminal, as a user's shell would, and read back what stayed on
the screen (a live progress bar redraws one line with carriage returns)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
from collections.abc import Callable, Sequence


def run_in_terminal(command: Sequence[str], env: dict[str, str],
                    on_line: Callable[[str], None] = lambda line: None, columns: int = 120,
                    rows: int = 50, timeout: float = 3600) -> tuple[int, str]:
    """Exit code and raw output (carriage returns kept) of `command` on a columns × rows pty;
    on_line hears each finished screen line as it comes."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(list(command), env=env, stdin=subprocess.DEVNULL, stdout=slave,
                               stderr=slave, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    pending = b""
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
            pending += data
            *done, pending = pending.split(b"\n")
            for line in done:
                on_line(visible(line.decode(errors="replace")))
    finally:
        os.close(master)
    return process.wait(timeout=timeout), b"".join(chunks).decode(errors="replace")


def visible(line: str) -> str:
    """What a redrawn line shows at the end: its last non-blank carriage-return segment."""
    segments = [s for s in line.rstrip("\r").split("\r") if s.strip()]
    return segments[-1].rstrip() if segments else ""


def screen_lines(raw: str) -> list[str]:
    """The lines left on the screen once the command is done."""
    return [visible(line) for line in raw.rstrip("\n").split("\n")]
