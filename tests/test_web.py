"""The web view and HTTP API (flight_server/web/): real Flight + HTTP servers on port 0, real
httpx requests; downloads are read back and compared with a Flight read of the same selection."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest

from arrowroot.catalog import identities
from arrowroot.catalog.errors import not_found
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.flight import ArrowrootServer
from arrowroot.flight_server.web import WebServer

pytestmark = pytest.mark.slow

EVENTS = "hep/events.root:events"
DETECTOR = "lab/scan.h5:detector"
IMAGE = "lab/scan.h5:entry/data/image"
PASSWORDS = {"alice": "alice-web-pw", "bob": "bob-web-pw"}
FORMATS = ["arrow", "feather", "parquet", "csv", "hdf5"]
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Both:
    flight: ArrowrootServer
    web: WebServer
    location: str

    def http(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.web.url.rstrip("/"), timeout=60, **kwargs)

    def stop(self) -> None:
        self.web.stop()
        self.flight.shutdown()


def serve_both(root: Path, catalog: Catalog | None = None, max_bytes: int = 0, **settings: object) -> Both:
    server = ArrowrootServer(Settings(root=root, port=0, **settings), catalog=catalog)
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    web = WebServer(server.service, 0, max_bytes=max_bytes, flight_port=server.port).start()
    scheme = "grpc+tls" if settings.get("tls_cert") else "grpc"
    return Both(server, web, f"{scheme}://127.0.0.1:{server.port}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_files(tmp_path_factory.mktemp("webdata"), entries=3000)


@pytest.fixture(scope="module")
def open_server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    b = serve_both(data_dir, Catalog(tmp_path_factory.mktemp("webcat") / "c.duckdb"))
    yield b
    b.stop()


@pytest.fixture(scope="module")
def private(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Both, Catalog]]:
    cat = Catalog(tmp_path_factory.mktemp("webprivate") / "c.duckdb")
    identities.add_user(cat, "alice", PASSWORDS["alice"], ["cms"])
    identities.add_user(cat, "bob", PASSWORDS["bob"], ["lab"])
    identities.grant(cat, "hep/*", "group:cms")
    identities.grant(cat, "lab/*", "group:lab")
    b = serve_both(data_dir, cat)
    yield b, cat
    b.stop()


def flight_read(location: str, request: dict, headers: list | None = None) -> pa.Table:
    opts = fl.FlightCallOptions(headers=headers or [])
    with fl.connect(location) as c:
        info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(request)), opts)
        parts = [c.do_get(ep.ticket, opts).read_all() for ep in info.endpoints]
    return pa.concat_tables(parts) if parts else info.schema.empty_table()


def flight_error(location: str, request: dict, headers: list | None = None) -> str:
    with pytest.raises(Exception) as err:
        flight_read(location, request, headers)
    return str(err.value).split(". Detail:")[0]


def read_back(fmt: str, content: bytes, schema: pa.Schema) -> pa.Table:
    """A download → an Arrow table with ``schema`` (as a user would read it)."""
    if fmt == "arrow":
        return pa.ipc.open_stream(content).read_all()
    if fmt == "feather":
        return pa.ipc.open_file(content).read_all()
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(content)).cast(schema)
    if fmt == "csv":
        nested = {f.name for f in schema if pa.types.is_nested(f.type)}
        types = {f.name: (pa.string() if f.name in nested else f.type) for f in schema}
        t = pcsv.read_csv(io.BytesIO(content), convert_options=pcsv.ConvertOptions(column_types=types))
        cols = [pa.array([json.loads(v) for v in t[f.name].to_pylist()], f.type) if f.name in nested
                else t[f.name].cast(f.type) for f in schema]
        return pa.Table.from_arrays(cols, schema=schema)
    with h5py.File(io.BytesIO(content), "r") as h:
        cols = []
        for f in schema:
            node = h[f.name]
            if isinstance(node, h5py.Group):
                values = node["flattened_data"][...]
                offsets = np.concatenate([[0], node["cumulative_length"][...]]).astype(np.int32)
                cols.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)).cast(f.type))
            elif node.ndim > 1:
                cols.append(pa.array(node[...].tolist(), f.type))
            else:
                cols.append(pa.array(node[...]).cast(f.type))
        return pa.Table.from_arrays(cols, schema=schema)


# ---------------------------------------------------------------- downloads equal Flight reads

SELECTIONS = [
    ({"dataset": EVENTS, "columns": ["nMuon", "Muon_pt", "MET_pt"], "entry_start": 100, "entry_stop": 900,
      "where": "nMuon >= 1 and MET_pt > 20"},
     "columns=nMuon,Muon_pt&columns=MET_pt&entry_start=100&entry_stop=900&where=nMuon+%3E%3D+1+and+MET_pt+%3E+20"),
    ({"dataset": IMAGE, "entry_start": 10, "entry_stop": 20, "slices": [{"start": 0, "stop": 16}, {"step": 4}]},
     "entry_start=10&entry_stop=20&slices=0:16,::4"),
    ({"dataset": DETECTOR}, ""),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("selection", SELECTIONS, ids=["events-cut", "image-slices", "detector-all"])
def test_downloads_equal_a_flight_read(open_server: Both, fmt: str, selection: tuple[dict, str]) -> None:
    request, query = selection
    expected = flight_read(open_server.location, request)
    assert expected.num_rows > 0
    with open_server.http() as h:
        r = h.get(f"/api/data/{request['dataset']}?{query}&format={fmt}")
    assert r.status_code == 200, r.text
    media = {"arrow": "application/vnd.apache.arrow.stream", "feather": "application/vnd.apache.arrow.file",
             "parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8",
             "hdf5": "application/x-hdf5"}[fmt]
    assert r.headers["content-type"] == media
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    got = read_back(fmt, r.content, expected.schema)
    assert got.num_rows == expected.num_rows
    assert got.equals(expected), f"{fmt}: {got.slice(0, 2)} != {expected.slice(0, 2)}"


def test_default_format_is_arrow_and_large_reads_stream_in_many_pieces(tmp_path: Path) -> None:
    b = serve_both(write_sample_files(tmp_path / "data", entries=200_000), Catalog(tmp_path / "c.duckdb"))
    try:
        expected = flight_read(b.location, {"dataset": EVENTS})
        assert expected.nbytes > 1 << 20  # more than a small read
        pieces = 0
        with b.http() as h, h.stream("GET", f"/api/data/{EVENTS}") as r:
            assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
            assert "content-length" not in r.headers and r.headers["transfer-encoding"] == "chunked"
            body = b""
            for piece in r.iter_raw():
                pieces += 1
                body += piece
        assert pieces > 1
        assert pa.ipc.open_stream(body).read_all().equals(expected)
    finally:
        b.stop()


def test_a_small_read_is_answered_whole(open_server: Both) -> None:
    """Up to 1 MiB planned, a download is made in one pool job and sent with its length (under load
    each job waits its turn: one job instead of one per piece raised small HTTP reads 1.3×)."""
    expected = flight_read(open_server.location, {"dataset": DETECTOR})
    with open_server.http() as h:
        r = h.get(f"/api/data/{DETECTOR}")
        assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
        assert r.headers["x-arrowroot-rows"] == str(expected.num_rows)
        assert pa.ipc.open_stream(r.content).read_all().equals(expected)
        csv = h.get(f"/api/data/{EVENTS}", params={"columns": "event,Muon_pt", "entry_stop": 5, "format": "csv"})
        assert csv.status_code == 200 and csv.text.count("\n") == 6 and "content-length" in csv.headers


def test_size_limit_is_refused_before_streaming(data_dir: Path, tmp_path: Path) -> None:
    b = serve_both(data_dir, Catalog(tmp_path / "c.duckdb"), max_bytes=20_000)
    try:
        with b.http() as h:
            r = h.get(f"/api/data/{EVENTS}?format=parquet")
            assert r.status_code == 400
            assert "over the server's limit of 0 MiB (--http-max-mb)" in r.json()["message"]
            small = h.get(f"/api/data/{EVENTS}?columns=nMuon&entry_stop=100&format=parquet")
            assert small.status_code == 200
            assert pq.read_table(io.BytesIO(small.content)).num_rows == 100
    finally:
        b.stop()


# ---------------------------------------------------------------- the catalog API


def test_api_datasets_and_search_match_list_flights(open_server: Both) -> None:
    with fl.connect(open_server.location) as c:
        def flight_names(criteria: dict) -> list[str]:
            return sorted(i.descriptor.path[0].decode() for i in c.list_flights(json.dumps(criteria).encode()))

        with open_server.http() as h:
            everything = h.get("/api/datasets").json()
            assert everything["count"] == everything["total"] == len(flight_names({})) == 7
            events = next(d for d in everything["datasets"] if d["name"] == EVENTS)
            assert events["entries"] == 3000 and events["format"] == "root" and events["kind"] == "ttree"
            assert "Muon_pt" in events["columns"] and events["attributes"]["title"] == "sample collider events"
            cases = [("name=lab/*", {"name": "lab/*"}), ("format=root", {"format": "root"}),
                     ("kind=hdf5.dataset", {"kind": "hdf5.dataset"}), ("has_column=energy", {"has_column": "energy"}),
                     ("attr=units=counts", {"attributes": {"units": "counts"}}),
                     ("attributes=%7B%22sample_rate_hz%22%3A+1000.0%7D", {"attributes": {"sample_rate_hz": 1000.0}}),
                     ("name=lab/*&kind=hdf5.table", {"name": "lab/*", "kind": "hdf5.table"})]
            for query, criteria in cases:
                got = h.get(f"/api/datasets?{query}").json()
                names = [d["name"] for d in got["datasets"]]
                assert names == flight_names(criteria) and names, query
                assert got["count"] == len(names) and got["total"] == 7


def test_api_dataset_detail(open_server: Both) -> None:
    with open_server.http() as h:
        d = h.get(f"/api/datasets/{IMAGE}").json()
    assert d["entries"] == 200 and d["attributes"]["units"] == "counts"
    (image,) = d["schema"]
    assert image["shape"] == [32, 32] and image["units"] == "counts" and image["source_type"] == "uint16"
    assert image["type"].startswith("fixed_size_list<item: fixed_size_list<item: uint16>[32]>[32]")
    assert d["parts"] == [{"path": "lab/scan.h5", "object": "entry/data/image", "entry_offset": 0,
                           "entries": 200, "bytes": (Path(open_server.flight.settings.root) / "lab/scan.h5").stat().st_size,
                           "channel": None, "keys": {}}]


def test_openapi_describes_every_api_route(open_server: Both) -> None:
    with open_server.http() as h:
        doc = h.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/api/health", "/api/datasets", "/api/datasets/{name}", "/api/data/{name}",
                                 "/api/view/{name}", "/api/follow/{name}"}
    data = doc["paths"]["/api/data/{name}"]["get"]
    assert {p["name"] for p in data["parameters"]} >= {"columns", "entry_start", "entry_stop", "where", "format", "slices",
                                                       "compression", "time_last", "allow_missing"}
    assert set(data["responses"]) >= {"200", "400", "401", "403", "404", "503"}
    assert "application/x-hdf5" in data["responses"]["200"]["content"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("request_, query, status", [
    ({"dataset": "hep/nothing.root:events"}, "", 404),
    ({"dataset": EVENTS, "columns": ["nope"]}, "columns=nope", 404),
    ({"dataset": EVENTS, "where": "nMuon >>= 2"}, "where=nMuon+%3E%3E%3D+2", 400),
    ({"dataset": EVENTS, "where": "__import__('os')"}, "where=__import__%28%27os%27%29", 400),
    ({"dataset": EVENTS, "slices": [{"start": 0}]}, "slices=0:", 400),
    ({"dataset": EVENTS, "entry_start": 10, "entry_stop": 5}, "entry_start=10&entry_stop=5", 400),
])
def test_errors_have_the_flight_message_and_status(open_server: Both, request_: dict, query: str, status: int) -> None:
    message = flight_error(open_server.location, request_)
    with open_server.http() as h:
        r = h.get(f"/api/data/{request_['dataset']}?{query}")
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == status and body["message"] == message
    assert "Traceback" not in r.text and str(open_server.flight.settings.root) not in r.text


@pytest.mark.parametrize("query, field", [("format=xls", "format"), ("entry_start=ten", "entry_start"),
                                           ("slices=a:b", "slices[0]")])
def test_bad_parameters_are_400_naming_the_field(open_server: Both, query: str, field: str) -> None:
    with open_server.http() as h:
        r = h.get(f"/api/data/{EVENTS}?{query}")
        assert r.status_code == 400 and r.json()["message"].startswith(f"{field}: ")
        assert h.get("/api/nothing").status_code == 404
        assert h.get("/api/nothing").json()["error"] == "not_found"


def test_a_changed_file_is_503_like_flight_unavailable(tmp_path: Path) -> None:
    root = write_sample_files(tmp_path / "d", entries=500)
    b = serve_both(root, Catalog(tmp_path / "c.duckdb"))
    try:
        path = root / "lab" / "scan.h5"

        def touch_and_wait() -> None:
            time.sleep(0.05)
            while b.flight.indexer.running:
                time.sleep(0.05)
            st = path.stat()
            os.utime(path, (st.st_atime, st.st_mtime + 10))

        touch_and_wait()
        message = flight_error(b.location, {"dataset": DETECTOR})   # this starts a re-index
        touch_and_wait()
        with b.http() as h:
            r = h.get(f"/api/data/{DETECTOR}?format=csv")
            assert r.status_code == 503
            assert r.json()["message"] == message and "modified since it was indexed" in message
            time.sleep(0.05)
            while b.flight.indexer.running:
                time.sleep(0.05)
            assert h.get(f"/api/data/{DETECTOR}?format=csv").status_code == 200   # re-indexed
    finally:
        b.stop()


# ---------------------------------------------------------------- pages


def test_index_is_a_tree_with_counts_and_search(open_server: Both) -> None:
    with open_server.http() as h:
        page = h.get("/").text
        assert "7 datasets" in page
        assert re.search(r"lab/\s*<span class=\"count\" title=\"datasets\">6</span>", page)
        assert re.search(r"<b>scan\.h5</b>\s*<span class=\"count\" title=\"datasets\">6</span>", page)
        for name in (EVENTS, DETECTOR, IMAGE):
            assert f'href="/datasets/{name}"' in page
        found = h.get("/", params={"name": "lab/*", "has_column": "energy"}).text
        assert "2 of 7 datasets match" in found
        assert f'href="/datasets/{DETECTOR}"' in found and EVENTS not in found
        found = h.get("/", params={"attr": "units=counts", "format": "hdf5"}).text
        assert "1 of 7 datasets match" in found and f'href="/datasets/{IMAGE}"' in found
        bad = h.get("/", params={"attr": "nokey"})
        assert bad.status_code == 400 and "attr: &#39;nokey&#39; is not key=value" in bad.text


def test_dataset_page_has_schema_preview_downloads_and_snippets(open_server: Both) -> None:
    with open_server.http() as h:
        r = h.get(f"/datasets/{EVENTS}")
    assert r.status_code == 200
    page = r.text
    assert "<code>var * float32</code>" not in page  # Arrow types are shown, not awkward's
    assert "<code>list&lt;item: float&gt;</code>" in page and "<code>float[]</code>" in page
    expected = flight_read(open_server.location, {"dataset": EVENTS, "entry_stop": 20})
    rows = re.findall(r"<tr>((?:<td>.*?</td>)+)</tr>", page.split('id="preview"')[1].split("</table>")[0])
    assert len(rows) == 20
    first = re.findall(r"<td>(.*?)</td>", rows[0])
    assert first[0] == "0"                                    # the entry number
    assert first[1:4] == [str(v) for v in expected.slice(0, 1).to_pylist()[0].values()][:3]
    jagged = [c for c in re.findall(r"<td>(.*?)</td>", "".join(rows)) if c.startswith("[")]
    assert jagged and all(len(c) <= 60 for c in jagged)
    for fmt in FORMATS:
        assert f'href="/api/data/{EVENTS}?format={fmt}" download>{fmt}</a>' in page
    for snippet in ("from arrowroot.clients import Client", "fl.FlightDescriptor.for_command",
                    "adbc_driver_flightsql.dbapi", "curl -fsS"):
        assert snippet in page
    assert f"grpc://127.0.0.1:{open_server.flight.port}" in page


def test_a_preview_is_planned_once_and_its_head_equals_the_full_read(open_server: Both) -> None:
    service = open_server.flight.service
    with open_server.http() as h:
        before = service.plans_made
        page = h.get(f"/datasets/{EVENTS}", params={"columns": "nMuon", "entry_start": 2990, "rows": 20}).text
        assert service.plans_made - before == 1
    rows = re.findall(r"<tr>((?:<td>.*?</td>)+)</tr>", page.split('id="preview"')[1].split("</table>")[0])
    expected = flight_read(open_server.location, {"dataset": EVENTS, "columns": ["nMuon"], "entry_start": 2990})
    assert [int(re.findall(r"<td>(.*?)</td>", r)[1]) for r in rows] == expected["nMuon"].to_pylist()  # 10 left
    # the head of a many-endpoint plan: whole tasks, then a trimmed one; the rows of the full read
    from arrowroot.flight_server.core.request import ReadSpec
    from arrowroot.flight_server.service.caller import Caller

    caller = Caller()
    one = service.plan(caller, ReadSpec(dataset=EVENTS, columns=("nMuon",)))
    whole = pa.Table.from_batches(list(service.run(one)), schema=one.schema)["nMuon"].to_pylist()
    (part,) = one.tasks[0].parts
    pieces = [(a, min(a + 700, part.stop)) for a in range(part.start, part.stop, 700)]
    many = replace(one, tasks=tuple(one.tasks[0].with_parts((replace(part, start=a, stop=b, boundaries=()),))
                                    for a, b in pieces))
    assert len(many.tasks) == 5
    for n in (0, 1, 699, 700, 701, 2999, 3000, 3005):
        head = many.head(n)
        got = pa.Table.from_batches(list(service.run(head)), schema=head.schema)["nMuon"].to_pylist()
        assert got == whole[:n] and head.entries == min(n, 3000), n
    assert service.plan(caller, ReadSpec(dataset=EVENTS, columns=("nMuon",), where="nMuon > 1")).head(5) is None


def test_preview_with_cut_and_range_and_a_bad_cut(open_server: Both) -> None:
    where = "nMuon >= 2 and MET_pt > 40"
    expected = flight_read(open_server.location, {"dataset": EVENTS, "columns": ["nMuon", "MET_pt"],
                                                  "entry_start": 500, "where": where, "with_entry_numbers": True})
    with open_server.http() as h:
        page = h.get(f"/datasets/{EVENTS}", params={"columns": "nMuon,MET_pt", "entry_start": 500,
                                                     "where": where, "rows": 7}).text
        table = page.split('id="preview"')[1].split("</table>")[0]
        rows = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>((?:<td>.*?</td>)+)</tr>", table)]
        assert [int(r[0]) for r in rows] == expected["entry"].to_pylist()[:7]
        assert [int(r[1]) for r in rows] == expected["nMuon"].to_pylist()[:7]
        assert "first 7 entries passing the cut" in page
        bad = h.get(f"/datasets/{EVENTS}", params={"where": "nMuon >>= 2"})
        assert bad.status_code == 400
        message = flight_error(open_server.location, {"dataset": EVENTS, "where": "nMuon >>= 2"})
        assert 'id="preview-error"' in bad.text and message.replace("'", "&#39;").replace(">", "&gt;") in bad.text
        missing = h.get("/datasets/hep/nothing.root:events")
        assert missing.status_code == 404 and "no dataset named" in missing.text


def _png(r: httpx.Response) -> tuple[int, int]:
    assert r.headers["content-type"] == "image/png" and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(r.content[16:20], "big"), int.from_bytes(r.content[20:24], "big")


def test_plots_are_pngs_and_errors_are_images_with_a_status(open_server: Both) -> None:
    with open_server.http() as h:
        page = h.get(f"/datasets/{IMAGE}", params={"plane": "5,:,:"}).text
        src = re.search(r'id="image" src="([^"]+)"', page).group(1).replace("&amp;", "&")
        assert _png(h.get(src)) == (640, 400)
        hist = re.search(r'id="hist" src="([^"]+)"', h.get(f"/datasets/{EVENTS}?hist=Muon_pt&where=nMuon>=2").text)
        assert "where=nMuon" in hist.group(1)
        assert _png(h.get(hist.group(1).replace("&amp;", "&"))) == (640, 400)
        line = re.search(r'id="line" src="([^"]+)"', h.get(f"/datasets/{DETECTOR}?line=energy").text)
        assert _png(h.get(line.group(1).replace("&amp;", "&"))) == (640, 400)
        assert _png(h.get(f"/plot/image/{IMAGE}", params={"column": "image", "plane": ":,3,:"}))
        bad = h.get(f"/plot/image/{IMAGE}", params={"column": "image", "plane": "5,:"})
        assert bad.status_code == 400 and _png(bad)
        assert h.get(f"/plot/hist/{EVENTS}", params={"column": "nope"}).status_code == 400
        assert h.get(f"/plot/hist/{EVENTS}", params={"column": "MET_pt", "where": "x >"}).status_code == 400


def test_histogram_counts_follow_the_cut(open_server: Both) -> None:
    """The histogram reads the same rows as a Flight read with the cut (checked on the values)."""
    from arrowroot.flight_server.web import columns, data

    caller = data.Caller(None)
    spec = data.spec({"dataset": EVENTS, "columns": ["Muon_pt"], "where": "nMuon >= 2"})
    values = np.concatenate([columns.numeric_values(b.column("Muon_pt"))
                             for b in data.read_batches(open_server.flight.service, spec, caller)])
    expected = flight_read(open_server.location, {"dataset": EVENTS, "columns": ["Muon_pt"], "where": "nMuon >= 2"})
    flat = np.concatenate([np.asarray(v, dtype=np.float32) for v in expected["Muon_pt"].to_pylist()])
    assert np.array_equal(values, flat.astype(np.float64))
    assert columns.numeric_values(pa.array([1.0, 2.0, 2.5, np.nan])).tolist() == [1.0, 2.0, 2.5]


def test_plane_cut_picks_the_right_pixels(open_server: Both) -> None:
    from arrowroot.flight_server.web import data, planes as plots

    with h5py.File(Path(open_server.flight.settings.root) / "lab" / "scan.h5") as f:
        stack = f["entry/data/image"][...]
    caller = data.Caller(None)
    for text, want in [("7,:,:", stack[7]), ("-1,:,:", stack[-1]), (":,4,:", stack[:, 4, :]),
                       (":,:,31", stack[:, :, 31])]:
        cut = plots.PlaneCut.parse(text, stack.shape)
        spec = data.spec({"dataset": IMAGE, "columns": ["image"], **cut.request(stack.shape)})
        got = plots.plane_values(data.read_batches(open_server.flight.service, spec, caller), "image", cut,
                                 cut.entry_step(stack.shape[0]))
        assert np.array_equal(got, want), text


# ---------------------------------------------------------------- auth


def _basic(user: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()


def test_no_credentials_is_401_for_the_api_and_the_login_page_for_pages(private: tuple[Both, Catalog]) -> None:
    b, _ = private
    with fl.connect(b.location) as c, pytest.raises(fl.FlightUnauthenticatedError) as err:
        list(c.list_flights())
    with b.http() as h:
        r = h.get("/api/datasets")
        assert r.status_code == 401 and r.json()["message"] == str(err.value).split(". Detail:")[0]
        assert "Bearer" in r.headers["www-authenticate"]
        assert h.get(f"/api/data/{EVENTS}").status_code == 401
        page = h.get(f"/datasets/{EVENTS}")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fdatasets%2Fhep%2Fevents.root%3Aevents"
        assert h.get("/").headers["location"] == "/login?next=%2F"
        assert h.get(f"/plot/hist/{EVENTS}?column=MET_pt").status_code == 401
        login = h.get("/login?next=/x")
        assert login.status_code == 200 and 'name="password" type="password"' in login.text


def test_login_cookie_shows_only_granted_datasets_and_logout_ends_it(private: tuple[Both, Catalog]) -> None:
    b, cat = private
    with b.http() as h:
        wrong = h.post("/login", data={"username": "alice", "password": "nope", "next": "/"})
        assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
        assert h.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]},
                      headers={"origin": "http://evil.example"}).status_code == 403
        ok = h.post("/login", data={"username": "alice", "password": PASSWORDS["alice"], "next": f"/datasets/{EVENTS}"})
        assert ok.status_code == 303 and ok.headers["location"] == f"/datasets/{EVENTS}"
        cookie = ok.headers["set-cookie"]
        assert "arrowroot_session=ars_" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback; with TLS the cookie is Secure (test_web_tls)
        page = h.get("/").text
        assert "alice" in page and "1 datasets" in page and DETECTOR not in page
        assert h.get(f"/datasets/{EVENTS}").status_code == 200
        assert [d["name"] for d in h.get("/api/datasets").json()["datasets"]] == [EVENTS]
        visible = [EVENTS]
        for name in (DETECTOR, "lab/scan.h5:nothing"):     # hidden and missing answer alike
            r = h.get(f"/api/datasets/{name}")
            assert r.status_code == 404 and r.json()["message"] == str(not_found("dataset", name, visible))
            assert h.get(f"/api/data/{name}").json() == r.json()
            assert h.get(f"/datasets/{name}").status_code == 404
            assert h.get(f"/plot/hist/{name}?column=energy").status_code == 404
        assert h.post("/logout").status_code == 303
        assert h.get("/api/datasets").status_code == 401
        h.cookies.set("arrowroot_session", cookie.split("arrowroot_session=")[1].split(";")[0])
        assert h.get("/api/datasets").json()["message"].startswith("unknown or expired token")
        assert h.get("/").status_code == 303


def test_bearer_tokens_api_keys_and_basic_work_like_flight(private: tuple[Both, Catalog]) -> None:
    b, cat = private
    with fl.connect(b.location) as c:
        header = c.authenticate_basic_token("bob", PASSWORDS["bob"])[1].decode()
    key_id, key = identities.create_key(cat, "bob", "web test")
    lab = sorted(d.name for d in cat.datasets() if d.name.startswith("lab/"))
    with b.http() as h:
        for headers in ({"authorization": header}, {"authorization": f"Bearer {key}"}, {"x-api-key": key},
                        {"authorization": _basic("bob")}):
            got = h.get("/api/datasets", headers=headers).json()
            assert [d["name"] for d in got["datasets"]] == lab, headers
        expected = flight_read(b.location, {"dataset": DETECTOR}, [(b"authorization", header.encode())])
        r = h.get(f"/api/data/{DETECTOR}?format=parquet", headers={"x-api-key": key})
        assert pq.read_table(io.BytesIO(r.content)).equals(expected)
        identities.revoke_key(cat, key_id)
        r = h.get("/api/datasets", headers={"x-api-key": key})
        assert r.status_code == 401 and "has been revoked" in r.json()["message"]
        assert h.get("/api/datasets", headers={"authorization": "Digest x"}).status_code == 401


def test_public_data_is_readable_anonymously(data_dir: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.duckdb")
    identities.add_user(cat, "alice", PASSWORDS["alice"])
    identities.grant(cat, "lab/scan.h5:detector*", "public")
    b = serve_both(data_dir, cat)
    try:
        with b.http() as h:
            page = h.get("/")
            assert page.status_code == 200 and "4 datasets" in page.text and "log in" in page.text
            assert h.get(f"/api/datasets/{EVENTS}").status_code == 404
            assert h.get(f"/api/data/{DETECTOR}?format=csv").status_code == 200
    finally:
        b.stop()


def test_web_tls_uses_the_flight_certificate(data_dir: Path, tmp_path: Path) -> None:
    from test_tls import Pki

    pki = Pki(tmp_path)
    cat = Catalog(tmp_path / "c.duckdb")
    identities.add_user(cat, "alice", PASSWORDS["alice"], ["cms"])
    identities.grant(cat, "hep/*", "group:cms")
    b = serve_both(data_dir, cat, tls_cert=pki.files["server_cert"], tls_key=pki.files["server_key"])
    try:
        assert b.web.url.startswith("https://")
        ctx = ssl.create_default_context(cadata=pki.ca.decode())
        with httpx.Client(base_url=b.web.url.replace("127.0.0.1", "localhost"), verify=ctx) as h:
            ok = h.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
            assert ok.status_code == 303 and "Secure" in ok.headers["set-cookie"]
            page = h.get(f"/datasets/{EVENTS}").text
            assert f"grpc+tls://localhost:{b.flight.port}" in page
        with pytest.raises(httpx.ConnectError):
            httpx.get(b.web.url)                                  # not trusted without the CA
        with pytest.raises(httpx.HTTPError):
            httpx.get(b.web.url.replace("https", "http"))         # clear text to a TLS port
    finally:
        b.stop()


# ---------------------------------------------------------------- command line and layering


def test_serve_http_zero_prints_both_urls(data_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(data_dir),
                             "--port", "0", "--http", "0", "--no-index", "--catalog", str(tmp_path / "c.duckdb")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first.startswith("serving grpc://127.0.0.1:")
        url = re.match(r"web view and HTTP API on (http://127\.0\.0\.1:\d+/)$", second.strip()).group(1)
        health = httpx.get(url + "api/health", timeout=60).json()
        assert health == {"status": "ok", "version": health["version"], "datasets": 0, "indexing": False}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_web_layer_uses_the_server_through_one_adapter() -> None:
    """Only web/data.py touches the planner, executor and server modules; no web module reads
    the catalog directly."""
    for path in sorted((ROOT / "flight_server" / "web").glob("*.py")):
        mods = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods.append(node.module)
            elif isinstance(node, ast.Import):
                mods += [a.name for a in node.names]
        assert not [m for m in mods if m.startswith("arrowroot.catalog") or m == "duckdb"], path.name
        inner = [m for m in mods if m.startswith(("arrowroot.flight_server.plan", "arrowroot.flight_server.execute",
                                                  "arrowroot.flight_server.server.auth",
                                                  "arrowroot.flight_server.server.flight"))]
        assert path.name == "data.py" or not inner, f"{path.name} imports {inner}"


def test_four_d_planes_and_downsampling(tmp_path: Path) -> None:
    """A 4-D stack (entries × z × y × x): any two axes make the plane; big axes are strided."""
    from arrowroot.flight_server.web import data, planes as plots

    root = tmp_path / "d"
    root.mkdir()
    cube = np.arange(6 * 5 * 1100 * 30, dtype=np.float32).reshape(6, 5, 1100, 30)
    with h5py.File(root / "cube.h5", "w") as f:
        f.create_dataset("cube", data=cube, chunks=(1, 5, 1100, 30))
    b = serve_both(root, Catalog(tmp_path / "c.duckdb"))
    try:
        caller = data.Caller(None)
        for text, want in [("2,:,7,:", cube[2, :, 7, :]), ("4,3,:,:", cube[4, 3, ::3, :]),
                           (":,1,:,29", cube[:, 1, ::3, 29])]:
            cut = plots.PlaneCut.parse(text, cube.shape)
            spec = data.spec({"dataset": "cube.h5:cube", "columns": ["cube"], **cut.request(cube.shape)})
            got = plots.plane_values(data.read_batches(b.flight.service, spec, caller), "cube", cut, cut.entry_step(6))
            assert np.array_equal(got, want), text
        with b.http() as h:
            page = h.get("/datasets/cube.h5:cube").text
            assert 'name="plane" value="0,0,:,:"' in page and "6 × 5 × 1100 × 30" in page
            assert _png(h.get("/plot/image/cube.h5:cube", params={"column": "cube", "plane": "1,:,:,4"})) == (640, 400)
            r = h.get("/plot/image/cube.h5:cube", params={"column": "cube", "plane": "1,9,:,:"})
            assert r.status_code == 400
    finally:
        b.stop()


def test_the_snippets_on_the_page_run_and_read_the_selection(open_server: Both, tmp_path: Path) -> None:
    """Each snippet, copied from the page as shown, reads exactly the rows of the selection."""
    import html

    where = "nMuon >= 1 and MET_pt > 20"
    expected = flight_read(open_server.location, {"dataset": EVENTS, "columns": ["nMuon", "MET_pt"],
                                                  "entry_start": 100, "entry_stop": 900, "where": where})
    with open_server.http() as h:
        page = h.get(f"/datasets/{EVENTS}", params={"columns": "nMuon,MET_pt", "entry_start": 100,
                                                     "entry_stop": 900, "where": where}).text
    blocks = [html.unescape(b) for b in re.findall(r"<pre>(.*?)</pre>", page, re.S)]
    client, pyflight, adbc, curl = blocks
    tail = {client: "print(table.num_rows, table['MET_pt'].to_pylist())",
            pyflight: "print(table.num_rows, table['MET_pt'].to_pylist())",
            adbc: "print(len(df), df['MET_pt'].tolist())"}
    for code, show in tail.items():
        out = subprocess.run([sys.executable, "-c", code + "\n" + show], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        n, values = out.stdout.split(" ", 1)
        assert int(n) == expected.num_rows
        assert np.allclose(json.loads(values), expected["MET_pt"].to_pylist())
    if shutil.which("curl"):
        subprocess.run(curl, shell=True, cwd=tmp_path, check=True, timeout=60)
        got = pcsv.read_csv(tmp_path / "data.csv")
        assert got.num_rows == expected.num_rows and got["nMuon"].to_pylist() == expected["nMuon"].to_pylist()


def test_snippets_name_the_logged_in_user(private: tuple[Both, Catalog]) -> None:
    b, _ = private
    with b.http() as h:
        page = h.get(f"/datasets/{DETECTOR}", headers={"authorization": _basic("bob")}).text
    assert "username=&#39;bob&#39;" in page or "username='bob'" in page
    assert "USER" not in page and PASSWORDS["bob"] not in page


def test_health_counts_what_each_caller_sees_and_follows_the_catalog(private: tuple[Both, Catalog]) -> None:
    """Anonymous probes are answered on the event loop from a count kept per catalog generation; a
    grant made meanwhile changes it at once, and a caller with credentials gets their own count."""
    b, cat = private
    with b.http() as h:
        assert h.get("/api/health").json()["datasets"] == 0          # nothing is public
        assert h.get("/api/health").json()["datasets"] == 0          # (the kept count)
        hep = sum(1 for d in cat.datasets() if d.name.startswith("hep/"))
        assert h.get("/api/health", headers={"authorization": _basic("alice")}).json()["datasets"] == hep
        identities.grant(cat, DETECTOR, "public")
        try:
            assert h.get("/api/health").json()["datasets"] == 1
        finally:
            identities.revoke(cat, DETECTOR, "public")
        assert h.get("/api/health").json()["datasets"] == 0
        assert h.get("/api/health", headers={"authorization": "Bearer nonsense"}).status_code == 401
