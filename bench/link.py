"""A rate-limited network link for benchmarks: two network namespaces joined by a veth pair,
each end shaped with ``tc ... tbf`` (netem is not in every kernel; tbf is).

Why: on loopback moving bytes is nearly free, so what pushdown and compression are worth to a
user on a network never shows. Here the server runs in one namespace and the client in the
other; nothing in the root namespace changes, and inside the pair only the two veth addresses
(10.213.0.1/30 and 10.213.0.2/30) and each namespace's loopback exist, so no traffic can go
anywhere else.

Needs root and iproute2 (``ip``, ``tc``). ``Link`` removes the namespaces (and with them the
veth pair and every process still inside) on exit, on an exception, on SIGTERM/SIGHUP and at
interpreter exit; a run that was killed outright is cleaned up by the next one. A lock file
keeps two runs from tearing down each other's link.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

SERVER_NS = "arrowroot-bench-srv"
CLIENT_NS = "arrowroot-bench-cli"
SERVER_DEV = "ar-bench-srv"  # interface names: at most 15 characters
CLIENT_DEV = "ar-bench-cli"
SERVER_IP = "10.213.0.1"
CLIENT_IP = "10.213.0.2"
PREFIX = 30
LOCK = Path("/run/arrowroot-bench-link.lock")

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def missing() -> str | None:
    """Why this machine cannot run the link (to print as "skipped: ..."), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and tc qdiscs)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs iproute2 (`{tool}` not found on PATH)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def parse_rate(text: str) -> int | None:
    """'1gbit', '100mbit', '500kbit' → bits per second; 'unshaped' → None (no tbf)."""
    text = text.strip().lower()
    if text in ("unshaped", "none", "max"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)bit", text)
    if not match:
        raise ValueError(f"rate {text!r}: use e.g. 1gbit, 100mbit, 500kbit or unshaped")
    bits = int(float(match.group(1)) * _UNITS[match.group(2)])
    if bits < 100_000:
        raise ValueError(f"rate {text!r}: below 100kbit the benchmark would take hours")
    return bits


def rate_label(bits: int | None) -> str:
    if bits is None:
        return "unshaped"
    for unit, scale in (("Gbit/s", 10**9), ("Mbit/s", 10**6), ("kbit/s", 10**3)):
        if bits >= scale:
            return f"{bits / scale:.3g} {unit}"
    return f"{bits} bit/s"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _exists(ns: str) -> bool:
    return Path("/run/netns", ns).exists()


def _remove_namespace(ns: str) -> None:
    """Kill what still runs inside (only processes in our own namespace), then delete it."""
    if not _exists(ns):
        return
    pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    for _ in range(50):  # the namespace goes once its last process has died
        if _run("ip", "netns", "delete", ns, check=False).returncode == 0 or not _exists(ns):
            return
        time.sleep(0.1)


class Link:
    """The two namespaces and the shaped veth pair, as a context manager.

    >>> with Link() as link:
    ...     link.shape(10**9)
    ...     server = link.popen("server", ["arrowroot", "serve", ...])
    """

    def __init__(self) -> None:
        self._lock: int | None = None
        self._procs: list[subprocess.Popen] = []
        self._old_handlers: dict[int, object] = {}
        self.rate: int | None = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> "Link":
        self._lock = os.open(LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            self._lock = None
            raise RuntimeError(f"another benchmark holds {LOCK} (its link is in use); wait for it to finish") from None
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._clean_leftovers()
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the `with`/finally blocks → close()

    def _clean_leftovers(self) -> None:
        """A previous run killed with SIGKILL leaves its namespaces (and maybe servers) behind."""
        for ns in (SERVER_NS, CLIENT_NS):
            _remove_namespace(ns)
        for dev in (SERVER_DEV, CLIENT_DEV):  # never created in the root namespace, but be sure
            if Path("/sys/class/net", dev).exists():
                _run("ip", "link", "delete", dev, check=False)

    def _create(self) -> None:
        _run("ip", "netns", "add", SERVER_NS)
        _run("ip", "netns", "add", CLIENT_NS)
        _run("ip", "link", "add", SERVER_DEV, "netns", SERVER_NS, "type", "veth",
             "peer", "name", CLIENT_DEV, "netns", CLIENT_NS)
        for ns, dev, ip in ((SERVER_NS, SERVER_DEV, SERVER_IP), (CLIENT_NS, CLIENT_DEV, CLIENT_IP)):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/{PREFIX}", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")

    def close(self) -> None:
        """Stop our processes, remove both namespaces (the veth pair goes with them). Idempotent."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._lock is not None:
            for ns in (SERVER_NS, CLIENT_NS):
                _remove_namespace(ns)
            os.close(self._lock)
            self._lock = None
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    # ------------------------------------------------------------ use

    def shape(self, bits: int | None) -> None:
        """Limit both directions (egress of each end) to ``bits`` per second; None removes the limit.

        burst: ~2 ms at the rate, at least 64 KiB so a GSO super-packet fits without being split;
        latency: 50 ms of queue before tbf drops, as a switch buffer would.
        """
        for ns, dev in ((SERVER_NS, SERVER_DEV), (CLIENT_NS, CLIENT_DEV)):
            _run("tc", "-n", ns, "qdisc", "del", "dev", dev, "root", check=False)
            if bits is not None:
                burst = max(64 * 1024, bits // 8 // 500)
                _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", str(bits),
                     "burst", str(burst), "latency", "50ms")
        self.rate = bits

    def popen(self, side: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen:
        """Start ``argv`` inside the "server" or "client" namespace; stopped by close()."""
        ns = {"server": SERVER_NS, "client": CLIENT_NS}[side]
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)  # type: ignore[call-overload]
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        """Stop one process started with popen()."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)


def rx_bytes(dev: str = CLIENT_DEV) -> int:
    """Bytes received on ``dev`` (headers included: what crossed the wire). Read from inside the
    client namespace, where `ip netns exec` mounts that namespace's /sys."""
    return int(Path("/sys/class/net", dev, "statistics", "rx_bytes").read_text())
