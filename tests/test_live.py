"""Live data (README "Live data"): the directory watched, files indexed as they come, grow and go;
follow streams over Flight, HTTP and the CLI — with real writers (uproot, h5py in SWMR mode, gwpy)
in other processes, a writer killed mid-file, a followed file deleted, a server restarted and
resumed with the token, data nodes, and the bounds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import uproot

from arrowroot.clients import ResourceExhausted, TimedOut, Unavailable
from arrowroot.flight_server.service.follow import Token
from arrowroot.flight_server.sources import writing

from conftest import start_server

# real server processes, writers and clients in other processes: not in the quick run
pytestmark = pytest.mark.slow

WRITERS = str(Path(__file__).with_name("live_writers.py"))
ROOT = Path(__file__).resolve().parents[1]


def writer(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WRITERS, *map(str, args)], stdout=subprocess.PIPE, text=True)


def live_server(root: Path, **settings: object):
    settings.setdefault("follow_heartbeat", 0.3)
    r = start_server(root, **settings)
    r.server.ctx.watcher.start()
    assert r.server.ctx.watcher.ready.wait(10)
    return r


def wait_for(pred, timeout: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def take(follower, n: int, column: str = "i", timeout: float = 60.0) -> list:
    """The first ``n`` values of ``column`` the follower yields (fails after ``timeout`` s)."""
    got: list = []
    timer = threading.Timer(timeout, follower.close)
    timer.start()
    try:
        for batch in follower:
            got.extend(batch.column(column).to_pylist())
            if len(got) >= n:
                break
    finally:
        timer.cancel()
    return got


def names(r) -> list[str]:
    return [d.name for d in r.server.catalog.datasets()]


# ------------------------------------------------------------------ format-level checks


def test_writing_state_from_headers(tmp_path):
    p = tmp_path / "a.h5"
    with h5py.File(p, "w", libver="latest") as f:
        f["x"] = np.arange(3)
        f.flush()
        assert writing.state(str(p)) == writing.WRITING      # open for writing: not whole
    assert writing.state(str(p)) == writing.CONSISTENT
    with h5py.File(tmp_path / "old.h5", "w") as f:          # superblock v0: no flags to read
        f["x"] = np.arange(3)
    assert writing.state(str(tmp_path / "old.h5")) == writing.UNKNOWN
    proc = writer("swmr", tmp_path / "s.h5", 3, 10, 0.5)
    try:
        assert proc.stdout.readline().startswith("flushed")
        assert writing.state(str(tmp_path / "s.h5")) == writing.LIVE
    finally:
        proc.wait(30)
    assert writing.state(str(tmp_path / "s.h5")) == writing.CONSISTENT
    with uproot.recreate(tmp_path / "t.root") as f:
        f["t"] = {"x": np.arange(5)}
    assert writing.state(str(tmp_path / "t.root")) == writing.CONSISTENT
    data = (tmp_path / "t.root").read_bytes()
    (tmp_path / "u.root").write_bytes(data + b"\0" * 100)   # baskets beyond fEND: a writer at work
    assert writing.state(str(tmp_path / "u.root")) == writing.WRITING


# ------------------------------------------------------------------ following with real writers


def test_follow_uproot_files_per_cycle(tmp_path):
    """A new ROOT file per cycle into a folder: every entry once, in order, with a cut and columns."""
    runs = tmp_path / "runs"
    writer("root-files", runs, 3, 50, 0).wait(60)
    r = live_server(tmp_path)
    try:
        c = r.client()
        follower = c.follow("runs/*.root:events", ["i", "x"], where="i % 2 == 0")
        proc = subprocess.Popen([sys.executable, "-c", (
            "import sys, time, numpy as np, uproot\n"
            f"d = {str(runs)!r}\n"
            "for i in range(3, 9):\n"
            "    with uproot.recreate(f'{d}/run{i:05d}.root') as f:\n"
            "        f.mktree('events', {'i': 'i8', 'x': 'f8'})\n"
            "        k = np.arange(i * 50, (i + 1) * 50, dtype='i8')\n"
            "        f['events'].extend({'i': k, 'x': k * 0.5})\n"
            "    print('closed', i, repr(time.time()), flush=True)\n"
            "    time.sleep(0.4)\n")], stdout=subprocess.PIPE, text=True)
        got = take(follower, 9 * 25)
        proc.wait(60)
        assert got == list(range(0, 450, 2))
        token = Token.decode(follower.resume_token, "runs/*.root:events")
        assert len(token.counts) <= 2   # the watermark keeps the token small
        follower.close()
        # resumed at the end: nothing is sent again; an idle stream sends heartbeats (0.3 s here)
        with c.follow("runs/*.root:events", ["i", "x"], where="i % 2 == 0", resume=follower.resume_token,
                      heartbeats=True) as idle:
            t0 = time.monotonic()
            batch = next(idle)
            assert batch.num_rows == 0 and idle.heartbeats == 1
            assert time.monotonic() - t0 >= 0.25
    finally:
        r.stop()


def test_follow_hdf5_swmr_writer(tmp_path):
    """h5py grows a file in SWMR mode in another process; the follower gets every row once, in order,
    within about a second of each flush."""
    r = live_server(tmp_path)
    proc = writer("swmr", tmp_path / "scan.h5", 15, 200, 0.2)
    try:
        wait_for(lambda: "scan.h5:scan" in names(r), what="the SWMR file in the catalog")
        flushed: dict[int, float] = {}   # cycle → when the writer's flush returned

        def lines() -> None:
            for line in proc.stdout:
                _, c, t = line.split()
                flushed[int(c)] = float(t)

        threading.Thread(target=lines, daemon=True).start()
        c = r.client()
        f = c.follow("scan.h5:scan", ["i", "x"])
        got: list = []
        x: list = []
        arrived: dict[int, float] = {}   # cycle → when its last row reached the follower
        for batch in f:
            now = time.time()
            got.extend(batch.column("i").to_pylist())
            x.extend(batch.column("x").to_pylist())
            for cycle in range(len(got) // 200):
                arrived.setdefault(cycle, now)
            if len(got) >= 3000:
                break
        f.close()
        assert got == list(range(3000))
        bad = [(k, v) for k, v in enumerate(x) if v != k * 0.5]
        assert not bad, (len(bad), bad[:5], bad[-5:])
        # flush → rows at the follower; cycles flushed before the follow started are not timed
        lag = sorted(arrived[k] - flushed[k] for k in arrived if k in flushed and arrived[k] - flushed[k] > -1
                     and k > min(arrived))
        assert lag and lag[len(lag) // 2] < 1.0, lag   # the goal, at the median on a busy machine
    finally:
        proc.wait(60)
        r.stop()


def test_follow_gwpy_channel_by_time(tmp_path):
    """gwpy writes a TimeSeries file every second into a channel folder; a follow from time T gets
    the samples from T on, contiguous in time, with their times."""
    t0, rate = 1_300_000_000.0, 256.0
    channel = tmp_path / "X1"
    writer("gwpy", channel, 2, rate, t0).wait(60)
    r = live_server(tmp_path)
    proc = writer("gwpy", channel, 6, rate, t0 + 2)
    try:
        name = "X1/*.hdf5:strain"
        wait_for(lambda: name in names(r), what="the channel's folder dataset")
        c = r.client()
        start = t0 + 1.5
        f = c.follow(name, time=(start, None), with_time=True)
        times: list = []
        values: list = []
        for batch in f:
            times.extend(batch.column("time").to_pylist())
            values.extend(batch.column("strain").to_pylist())
            if len(times) >= int(5.5 * rate):
                break
        f.close()
        assert times[0] == start
        assert np.allclose(np.diff(times), 1 / rate)
        assert values == [float(v) for v in range(int(1.5 * rate), int(1.5 * rate) + len(values))]
    finally:
        proc.wait(60)
        r.stop()


def test_writer_killed_mid_file_and_deleted_file(tmp_path):
    """A writer killed mid-file: what it completed is served, a file left open for writing is never
    served as complete (after the grace period it is recorded as broken, the server stays up); a
    followed file deleted leaves the dataset and the stream goes on."""
    runs = tmp_path / "runs"
    writer("root-files", runs, 3, 10, 0).wait(60)
    r = live_server(tmp_path, watch_grace=2.0)
    try:
        c = r.client()
        f = c.follow("runs/*.root:events", ["i"])
        assert take(f, 30) == list(range(30))
        grow = writer("root-grow", runs / "run00003.root", 1000, 10, 0.5)
        for _ in range(4):
            grow.stdout.readline()
        grow.send_signal(signal.SIGKILL)
        grow.wait(10)
        more = take(f, 40)
        assert more[:40] == list(range(40))     # the killed writer's extends, each whole
        (runs / "run00000.root").unlink()                       # delete a followed file
        wait_for(lambda: "runs/run00000.root:events" not in names(r), what="the deleted file leaving")
        writer("root-file", runs / "run00009.root", 1000, 10).wait(60)  # the stream goes on
        assert take(f, 10) == list(range(1000, 1010))
        # a file an h5py writer holds open (libver latest): never served while it is open
        holder = writer("h5-open", tmp_path / "open.h5")
        assert holder.stdout.readline().startswith("open")
        time.sleep(1.0)
        assert "open.h5:x" not in names(r)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        wait_for(lambda: any(p == "open.h5" for p, _ in r.server.catalog.file_errors()), timeout=20,
                 what="the abandoned file recorded as broken")
        assert "open.h5:x" not in names(r)
        assert c.action("health")["status"] == "ok"
        f.close()
    finally:
        r.stop()


def test_restart_and_resume_with_the_token(tmp_path):
    """Stop the server mid-follow, keep writing, start a new one: the token continues with no gap
    and no duplicate."""
    runs = tmp_path / "runs"
    writer("root-files", runs, 2, 20, 0).wait(60)
    r = live_server(tmp_path)
    proc = writer("root-files", runs, 12, 20, 0.3)
    try:
        f = r.client().follow("runs/*.root:events", ["i"], batch_rows=7)
        first = take(f, 61)
        token = f.resume_token
        f.close()
    finally:
        r.stop()
    proc.wait(60)
    r2 = live_server(tmp_path)
    try:
        wait_for(lambda: r2.server.catalog.dataset("runs/*.root:events").entries == 240, what="all files")
        f = r2.client().follow("runs/*.root:events", ["i"], resume=token)
        rest = take(f, 240 - len(first))
        f.close()
        assert first + rest == list(range(240))
    finally:
        r2.stop()


# ------------------------------------------------------------------ bounds, nodes, HTTP, CLI


def test_follow_bounds(tmp_path):
    """A follow holds a stream slot for its life and counts against max_follows; a follower that
    reads nothing is dropped after the idle timeout with a clear status."""
    writer("root-files", tmp_path / "runs", 2, 10, 0).wait(60)
    r = live_server(tmp_path, max_follows=1, stream_idle_timeout=1.0, follow_heartbeat=0.05)
    try:
        c = r.client()
        f = c.follow("runs/*.root:events", ["i"])
        assert take(f, 20) == list(range(20))
        assert r.server.streams.open_count() == 1
        with pytest.raises(ResourceExhausted):
            next(iter(c.follow("runs/*.root:events", ["i"])))
        f.close()
        wait_for(lambda: r.server.streams.open_count() == 0, what="the slot freed")
        # a stalled follower: new data fills gRPC's window, the reaper drops it
        stalled = c.follow("runs/*.root:events", ["x"])
        next(stalled)
        writer("root-files", tmp_path / "runs", 40, 40_000, 0).wait(120)
        wait_for(lambda: r.server.streams.open_count() == 0, timeout=60, what="the stalled follower dropped")
        with pytest.raises(TimedOut, match="slow follower"):
            for _ in stalled:
                pass
    finally:
        r.stop()


def test_follow_through_a_data_node(tmp_path):
    """With a data node, the follow stream hands new parts out as endpoints; the client fetches them
    from the node."""
    runs = tmp_path / "runs"
    writer("root-files", runs, 2, 10, 0).wait(60)
    key = tmp_path / "key"
    key.write_text("a shared secret of enough length\n")
    r = live_server(tmp_path, ticket_key_file=key)
    node = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "node", str(tmp_path), "--port", "0",
                             "--key-file", str(key), "--join", r.location], stdout=subprocess.PIPE, text=True)
    try:
        line = node.stdout.readline()
        assert line.startswith("node serving"), line
        wait_for(lambda: any(n["alive"] for n in r.client().action("nodes")["nodes"]), what="the node joined")
        c = r.client()
        f = c.follow("runs/*.root:events", ["i"])
        more = subprocess.Popen([sys.executable, "-c", (
            "import numpy as np, uproot\n"
            "for i in range(2, 5):\n"
            f"    with uproot.recreate({str(runs)!r} + f'/run{{i:05d}}.root') as f:\n"
            "        f.mktree('events', {'i': 'i8', 'x': 'f8'})\n"
            "        k = np.arange(i * 10, (i + 1) * 10, dtype='i8')\n"
            "        f['events'].extend({'i': k, 'x': k * 0.5})\n")])
        got = take(f, 50)
        more.wait(60)
        f.close()
        assert got == list(range(50))
        with fl.connect(line.split()[2]) as nc:
            stats = json.loads(next(iter(nc.do_action(("stats", b"")))).body.to_pybytes())
        # the node sent them: the first four parts in full (the fifth stream is still open when the
        # follower stops after its last row, so its count is not in yet)
        assert stats["served"]["rows"] >= 40
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)
        r.stop()


def test_follow_over_http_sse_and_arrow(tmp_path):
    from arrowroot.flight_server.web import WebServer

    runs = tmp_path / "runs"
    writer("root-files", runs, 2, 10, 0).wait(60)
    r = live_server(tmp_path)
    web = WebServer(r.server.service, flight_port=r.server.port).start()
    try:
        url = f"{web.url}api/follow/runs/*.root:events?columns=i&format=sse"
        resp = urllib.request.urlopen(url, timeout=30)
        assert resp.headers["content-type"].startswith("text/event-stream")
        rows, last_id, event = [], None, {}
        while len(rows) < 15:
            line = resp.readline().decode().rstrip("\n")
            if line.startswith("id: "):
                event["id"] = line[4:]
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = line[6:]
            elif not line and "event" in event:
                if event["event"] == "rows":
                    rows.extend(row["i"] for row in json.loads(event["data"])["rows"])
                    last_id = event["id"]
                event = {}
        resp.close()
        assert rows == list(range(len(rows))) and len(rows) >= 15
        # a browser reconnects with Last-Event-ID: the stream goes on after it
        req = urllib.request.Request(url, headers={"Last-Event-ID": last_id})
        writer("root-files", runs, 3, 10, 0).wait(60)   # rewrites 0-1 (same rows), adds run00002
        resp = urllib.request.urlopen(req, timeout=30)
        text = b""
        while text.count(b"event: rows") < 1 or b'"i": 29' not in text:
            text += resp.read1(65536)
        resp.close()
        again = [row["i"] for chunk in text.split(b"\n\n") if b"event: rows" in chunk
                 for row in json.loads(chunk.split(b"data: ", 1)[1])["rows"]]
        assert rows + again[:30 - len(rows)] == list(range(30))
        # chunked Arrow IPC: batches with their resume token as custom metadata
        resp = urllib.request.urlopen(f"{web.url}api/follow/runs/*.root:events?columns=i&format=arrow", timeout=30)
        reader = pa.ipc.open_stream(resp)
        seen = []
        while len(seen) < 30:
            batch, meta = reader.read_next_batch_with_custom_metadata()
            seen.extend(batch.column(0).to_pylist())
            assert b"resume" in dict(meta)
        resp.close()
        assert seen[:30] == list(range(30))
    finally:
        web.stop()
        r.stop()


def test_cli_get_follow(tmp_path):
    runs = tmp_path / "runs"
    writer("root-files", runs, 2, 5, 0).wait(60)
    r = live_server(tmp_path)
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "get", "runs/*.root:events", "-",
                                 "--follow", "-c", "i", "-l", r.location, "--token-file", str(tmp_path / "tok")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        rows = [json.loads(proc.stdout.readline())["i"] for _ in range(10)]
        writer("root-files", runs, 3, 5, 0).wait(60)
        rows += [json.loads(proc.stdout.readline())["i"] for _ in range(5)]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert rows == list(range(15))
        token = (tmp_path / "tok").read_text().strip()
        assert f"--resume {token}" in err
    finally:
        r.stop()


@pytest.mark.slow
def test_storm_of_new_files_indexed_in_batches(tmp_path):
    """600 new files at once are indexed in batches (of at least 256) while small reads keep answering."""
    writer("root-files", tmp_path / "base", 2, 10, 0).wait(60)
    r = live_server(tmp_path)
    try:
        c = r.client()
        storm = tmp_path / "storm"
        storm.mkdir()
        src = (tmp_path / "base" / "run00000.root").read_bytes()
        for i in range(600):
            (storm / f"f{i:05d}.root").write_bytes(src)
        slowest = 0.0
        end = time.monotonic() + 120
        while time.monotonic() < end:
            t = time.perf_counter()
            assert c.read("base/*.root:events", ["i"]).num_rows == 20
            slowest = max(slowest, time.perf_counter() - t)
            if r.server.catalog.dataset("base/*.root:events") and "storm/*.root:events" in names(r) and \
                    r.server.catalog.dataset("storm/*.root:events").entries == 6_000:
                break
        assert r.server.catalog.dataset("storm/*.root:events").entries == 6_000
        assert r.server.ctx.watcher.batches >= 2
        assert slowest < 5.0, slowest
    finally:
        r.stop()


@pytest.mark.slow
@pytest.mark.browser
def test_web_view_live_toggle_appends_to_the_plot(tmp_path):
    """The dataset page's "live" toggle (real Chromium): new files written by uproot in another
    process show up in the drawn histogram without a reload."""
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH")
    from arrowroot.flight_server.web import WebServer

    runs = tmp_path / "runs"
    writer("root-files", runs, 2, 10, 0).wait(60)
    r = live_server(tmp_path)
    web = WebServer(r.server.service, flight_port=r.server.port).start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{web.url}datasets/runs/%2A.root:events")
            view = "document.querySelector('#view-column .chart')._arrowroot"
            page.wait_for_function(f"() => {view} && {view}.view.entries === 20")
            page.select_option("#view-column select[name=hist]", "i")
            page.wait_for_function(f"() => {view}.view.column === 'i'")
            page.check("#view-column input[name=live]")
            page.wait_for_function("() => +(document.querySelector('#view-column').dataset.liveEvents || 0) >= 1")
            writer("root-files", runs, 4, 10, 0, 2).wait(60)       # run00002, run00003: i = 20..39
            page.wait_for_function(f"() => {view}.view.entries === 40")
            v = page.evaluate(f"{view}.view")
            assert v["column"] == "i" and v["values"] == 40
            edges, counts = np.array(v["edges"]), page.evaluate(f"Array.from({view}.plot.data[1])")
            assert sum(c for c in counts if c) == 40
            assert np.histogram(np.arange(40), bins=edges)[0].tolist() == [c or 0 for c in counts[:len(edges) - 1]]
            page.uncheck("#view-column input[name=live]")
            assert page.evaluate("document.querySelector('#view-column').dataset.live") is None
            assert not errors, errors
            browser.close()
    finally:
        web.stop()
        r.stop()


def test_growing_files_never_answer_from_stale_cached_chunks(tmp_path):
    """With the column-chunk cache on, a file read, then grown by its writer (uproot extending a
    TTree; h5py flushing in SWMR mode), then read again gives its new rows and the old ones right."""
    r = live_server(tmp_path, cache_mb=64)
    grow = writer("root-grow", tmp_path / "grow.root", 6, 50, 0.6)
    swmr = writer("swmr", tmp_path / "scan.h5", 6, 50, 0.6)
    try:
        c = r.client()
        wait_for(lambda: {"grow.root:events", "scan.h5:scan"} <= set(names(r)), what="both files")
        seen = {"grow.root:events": set(), "scan.h5:scan": set()}
        end = time.monotonic() + 60
        while time.monotonic() < end and any(len(v) < 3 for v in seen.values()):
            for name in seen:
                try:
                    t = c.read(name, ["i", "x"])
                except Unavailable as exc:   # a plain read planned before a flush: the clear, retryable status
                    assert "ask for a new FlightInfo" in str(exc)
                    continue
                n = t.num_rows
                assert t.column("i").to_pylist() == list(range(n)), name
                assert t.column("x").to_pylist() == [k * 0.5 for k in range(n)], name
                seen[name].add(n)
            time.sleep(0.2)
        assert all(len(v) >= 3 for v in seen.values()), seen   # read at three sizes at least, each whole
        assert r.server.ctx.readers.chunks.stats()["hits"] > 0   # ... and the cache was in use
    finally:
        grow.wait(60)
        swmr.wait(60)
        r.stop()
