"""Running the real ``arrowroot`` command in a subprocess, as a user's shell does."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "arrowroot.flight_server.cli"]


def clean_env(unset: tuple[str, ...] = (), **env: str) -> dict[str, str]:
    """The test's environment without any ARROWROOT_* variable (nor ``unset``), plus ``env``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("ARROWROOT_") and k not in unset}
    out.update(env)
    return out


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, input=input,
                          env=clean_env(**(env or {})), cwd=cwd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A long-running command (``serve``, ``node``) until its first line of output, stopped by its pid."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
                 unset: tuple[str, ...] = ()):
        """Starts the command; ``line`` waits for its first line (so several can start at once)."""
        self.proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=clean_env(unset, **(env or {})))
        self.timeout = timeout
        self._line: str | None = None

    @property
    def line(self) -> str:
        if self._line is None:
            self._line = self._first_line(self.timeout)
        return self._line

    def _first_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                return self.proc.stdout.readline().strip()
            if self.proc.poll() is not None:
                return ""
        return ""

    @property
    def port(self) -> int:
        m = re.search(r"://[^:\s]+:(\d+)", self.line)
        assert m, f"no address in {self.line!r}; stderr: {self.stop()}"
        return int(m.group(1))

    def stop(self) -> str:
        """SIGTERM (what `docker stop` sends); returns stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err

    def __enter__(self) -> "Running":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
