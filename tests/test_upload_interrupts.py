"""Interrupted, stalled and unfinished uploads leave no dataset and no temporary file.

Each client is a real process (``upload_client.py``) killed after its fifth batch with SIGKILL,
SIGTERM or SIGINT — SIGINT is the case that used to keep 5,000 rows: Python's KeyboardInterrupt
closes the writer on its way out, which ends the stream normally. The workspace API now keeps an
upload only when its last message is the commit message (``PUT_COMMIT``), the stream then ended
and the call was not cancelled; ADBC's bulk ingest cancels its call when interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.clients.errors import Unavailable
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.protos import PUT_COMMIT

from conftest import start_server

# real server processes, writers and clients in other processes: not in the quick run
pytestmark = pytest.mark.slow

CLIENT = Path(__file__).with_name("upload_client.py")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = write_sample_files(tmp_path_factory.mktemp("interrupts"), entries=100)
    r = start_server(root, stream_idle_timeout=2.0, max_streams=4)
    yield r
    r.stop()


def _temp_files(r) -> list[Path]:
    home = r.server.ctx.workspace.dir / "home"
    return [p for p in home.rglob(".tmp-*")] if home.exists() else []


def _names(r) -> list[str]:
    return [e.name for e in r.server.catalog.workspace_entries()]


def _start(r, name: str, kind: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CLIENT), r.location, name, kind, *extra], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, line: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    for got in proc.stdout:
        if got.strip() == line:
            return
        assert time.monotonic() < deadline, f"no {line!r} from the client"
    raise AssertionError(f"the client ended before {line!r} ({time.monotonic() - deadline + timeout:.1f} s): "
                         f"{proc.stderr.read()[-2000:]}")


def _waiting_on_clients() -> int:
    """Threads of this process blocked reading an upload's next message."""
    return sum(1 for f in sys._current_frames().values()
               if any(code.co_name == "__iter__" and code.co_filename.endswith("transport.py")
                      for code in _codes(f)))


def _codes(frame):
    while frame is not None:
        yield frame.f_code
        frame = frame.f_back


def _settle(r, timeout: float = 10.0) -> None:
    """Until the server has no stream open (the upload's handler has finished)."""
    deadline = time.monotonic() + timeout
    while r.server.streams.open_count() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("kind,sig", [("raw", signal.SIGINT), ("raw", signal.SIGKILL), ("client", signal.SIGINT),
                                      ("client", signal.SIGTERM), ("adbc", signal.SIGINT), ("adbc", signal.SIGKILL)])
def test_interrupted_upload_leaves_nothing(server, kind, sig) -> None:
    name = f"home/local/{kind}_{sig.name.lower()}"
    proc = _start(server, name, kind)
    try:
        _wait_for(proc, "sent 5")
        os.kill(proc.pid, sig)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _settle(server)
    time.sleep(0.3)
    assert name not in _names(server)
    assert _temp_files(server) == []
    server.client().put(name, pa.table({"x": [1, 2, 3]}))  # the name is free, its lock too
    assert server.client().read(name, "x")["x"].to_pylist() == [1, 2, 3]


def test_stream_without_the_commit_message_is_not_kept(server) -> None:
    """A raw client that ends its stream without the commit message learns the contract."""
    c = server.flight()
    t = pa.table({"x": list(range(100))})
    writer, reader = c.do_put(fl.FlightDescriptor.for_command(b'{"dataset": "home/local/uncommitted"}'), t.schema)
    writer.write_table(t)
    with pytest.raises(pa.ArrowInvalid, match="without the commit message.*arrowroot.commit"):
        writer.done_writing()
        reader.read()
        writer.close()
    writer, _ = c.do_put(fl.FlightDescriptor.for_command(b'{"dataset": "home/local/late"}'), t.schema)
    writer.write_metadata(pa.py_buffer(PUT_COMMIT))
    writer.write_table(t)  # data after the commit message: refused too
    with pytest.raises(pa.ArrowInvalid, match="after the commit message"):
        writer.close()
    assert not {"home/local/uncommitted", "home/local/late"} & set(_names(server))
    assert _temp_files(server) == []


def test_stalled_uploads_time_out_and_hold_no_slot(tmp_path) -> None:
    """Four clients that send one batch and then nothing for 12 s take the server's four stream
    slots; a fifth is refused; the idle timeout (3 s) ends them: temp files deleted, slots freed,
    their connections cut, so no handler thread waits on them any more; when they wake up and
    write, they get the error."""
    root = write_sample_files(tmp_path / "d", entries=100)
    server = start_server(root, stream_idle_timeout=3.0, max_streams=4)
    procs = [_start(server, f"home/local/stalled{i}", "raw", "--stall", "12", "--wait") for i in range(4)]
    try:
        for p in procs:
            _wait_for(p, "ready")
        for p in procs:  # all at once: their idle clocks start together
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            _wait_for(p, "sent 1")
        deadline = time.monotonic() + 2
        while (server.server.streams.open_count() < 4 or len(_temp_files(server)) < 4) \
                and time.monotonic() < deadline:  # a slot is taken before the upload's file is made
            time.sleep(0.02)
        assert server.server.streams.open_count() == 4
        assert len(_temp_files(server)) == 4
        with pytest.raises(Unavailable, match="resource exhausted"):
            server.client().put("home/local/fifth", pa.table({"x": [1]}))
        deadline = time.monotonic() + 15
        while (server.server.streams.open_count() or _temp_files(server)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.server.streams.open_count() == 0
        assert _temp_files(server) == []
        deadline = time.monotonic() + 5
        while _waiting_on_clients() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _waiting_on_clients() == 0  # the cut connections freed the gRPC threads
        for p in procs:
            p.wait(30)
            assert p.returncode != 0 and "Error" in p.stderr.read()
        server.client().put("home/local/fifth", pa.table({"x": [1]}))
        assert not any(n.startswith("home/local/stalled") for n in _names(server))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        server.stop()
