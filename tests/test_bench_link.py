"""bench/link.py: the shaped veth link the network benchmark runs over.

Real namespaces, a real veth pair and real tbf qdiscs (root and iproute2 needed, else skipped):
the rate is what was asked for, only the two veth addresses exist inside, and nothing is left
behind — after a normal exit, after SIGTERM, and after a run killed outright.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.network]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import link  # noqa: E402

NAMESPACES = (link.SERVER_NS, link.CLIENT_NS)


def _gone() -> bool:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    root_links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return (not any(ns in listed for ns in NAMESPACES)
            and link.SERVER_DEV not in root_links and link.CLIENT_DEV not in root_links)


@pytest.fixture
def can_link():
    reason = link.missing()
    if reason:
        pytest.skip(reason)
    try:  # a benchmark running right now holds the link: do not fight it
        with link.Link():
            pass
    except RuntimeError as exc:
        pytest.skip(str(exc))
    assert _gone()


def test_rates_parse_and_print():
    assert link.parse_rate("1gbit") == 10**9
    assert link.parse_rate("100mbit") == 10**8
    assert link.parse_rate("2.5Mbit") == 2_500_000
    assert link.parse_rate("unshaped") is None
    for bad in ("1gb", "fast", "10bit"):
        with pytest.raises(ValueError, match="rate"):
            link.parse_rate(bad)
    assert link.rate_label(10**9) == "1 Gbit/s" and link.rate_label(10**8) == "100 Mbit/s"
    assert link.rate_label(None) == "unshaped"


SENDER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], 9917)); s.listen(1); print("ready", flush=True)
    c, _ = s.accept(); c.sendall(b"x" * int(sys.argv[2])); c.close()
""")
RECEIVER = textwrap.dedent("""
    import socket, sys, time
    sys.path.insert(0, sys.argv[3])
    import link
    rx0 = link.rx_bytes()
    c = socket.create_connection((sys.argv[1], 9917)); t0 = time.perf_counter(); n = 0
    while (b := c.recv(1 << 20)):
        n += len(b)
    print(n, time.perf_counter() - t0, link.rx_bytes() - rx0)
""")


def test_link_is_shaped_to_the_rate_and_removed(can_link):
    size = 4_000_000
    with link.Link() as ln:
        listed = subprocess.run(["ip", "-n", link.CLIENT_NS, "-o", "addr", "show"], capture_output=True,
                                text=True).stdout
        inet = sorted(line.split()[3] for line in listed.splitlines() if " inet " in line)
        assert inet == ["10.213.0.2/30", "127.0.0.1/8"]  # nothing else to send to
        ln.shape(50 * 10**6)
        qdisc = subprocess.run(["tc", "-n", link.SERVER_NS, "qdisc", "show", "dev", link.SERVER_DEV],
                               capture_output=True, text=True).stdout
        assert "tbf" in qdisc and "50Mbit" in qdisc
        sender = ln.popen("server", [sys.executable, "-c", SENDER, link.SERVER_IP, str(size)],
                          stdout=subprocess.PIPE, text=True)
        assert sender.stdout.readline().strip() == "ready"
        out = subprocess.run(["ip", "netns", "exec", link.CLIENT_NS, sys.executable, "-c", RECEIVER,
                              link.SERVER_IP, str(size), str(Path(link.__file__).parent)],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
        n, seconds, wire = int(out[0]), float(out[1]), int(out[2])
        assert n == size and wire > size  # every byte, plus TCP/IP headers, crossed the veth
        measured = n * 8 / seconds
        assert 0.6 * 50e6 < measured < 1.1 * 50e6, measured
        ln.shape(None)
        qdisc = subprocess.run(["tc", "-n", link.SERVER_NS, "qdisc", "show", "dev", link.SERVER_DEV],
                               capture_output=True, text=True).stdout
        assert "tbf" not in qdisc
    assert _gone()


def test_leftovers_of_a_killed_run_are_removed(can_link):
    subprocess.run(["ip", "netns", "add", link.SERVER_NS], check=True)
    orphan = subprocess.Popen(["ip", "netns", "exec", link.SERVER_NS, "sleep", "300"])
    time.sleep(0.3)
    with link.Link():
        assert orphan.wait(10) == -signal.SIGKILL  # the old run's process inside was stopped
    assert _gone()


def test_sigterm_removes_the_link(can_link):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(link.__file__).parent)!r})
        import link
        with link.Link() as ln:
            ln.shape(10**8)
            ln.popen("server", ["sleep", "300"])
            print("up", flush=True)
            time.sleep(300)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    assert not _gone()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 128 + signal.SIGTERM
    assert _gone()


def test_network_bench_skips_without_iproute2(tmp_path):
    """No `ip`/`tc` on PATH: the benchmark says why and exits 0 before building anything."""
    script = Path(link.__file__).parent / "network.py"
    proc = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=120,
                          env={"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    if link.missing() == "needs root (network namespaces and tc qdiscs)":
        assert proc.stdout.strip() == "skipped: needs root (network namespaces and tc qdiscs)"
    else:
        assert proc.stdout.strip() == "skipped: needs iproute2 (`ip` not found on PATH)"
