"""The Python client: one primitive, ``read_batches``, and everything else derived from it.

Depends only on pyarrow and the protos, never on the server package.
"""

from __future__ import annotations

import json
import queue
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.protos import PUT_COMMIT
from arrowroot.protos import arrowroot_pb2 as pb

from .bearer import find_token, read_token_file
from .convert import convert
from .errors import Unavailable, translate
from .follow import Follower

_DONE = object()
REUSE_CONNECTION = "arrow-flight-reuse-connection:"
class UnreadableColumnsWarning(UserWarning):
    """A read of "all columns" left out columns the server cannot interpret (the message says why)."""


def notes(info: fl.FlightInfo) -> dict:
    """The server's notes on a FlightInfo (its app_metadata, JSON): skipped columns, gaps, ..."""
    raw = info.app_metadata
    if not raw:
        return {}
    try:
        out = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return out if isinstance(out, dict) else {}


def skipped_message(dataset: str, skipped: list[dict]) -> str:
    shown = "; ".join(f"{s.get('name')}: {s.get('reason')}" for s in skipped[:10])
    more = f" (and {len(skipped) - 10} more)" if len(skipped) > 10 else ""
    return f"{dataset}: {len(skipped)} column(s) left out, they cannot be read: {shown}{more}"


class IncompleteKeysWarning(UserWarning):
    """A level read left out file keys (or channels) that lack a tier (``allow_missing`` reads them)."""


def left_out_message(dataset: str, left: dict) -> str:
    examples = "; ".join(f"{e.get('key')} lacks {', '.join(e.get('missing') or [])}"
                         + (f" ({e['channels']} channel(s))" if e.get("channels") else "")
                         for e in (left.get("examples") or [])[:5])
    return (f"{dataset}: {left.get('parts')} table(s) ({left.get('entries')} entries) left out, their key lacks a "
            f"tier: {examples}; read with allow_missing=True to get them with nulls")


# Errors after which the next location of an endpoint is tried: the node is down or
# unreachable. Anything else (bad ticket, file changed, ...) is the server's answer.
_RETRY_ELSEWHERE = (Unavailable, fl.FlightTimedOutError, ConnectionError)


def _request(
    dataset: str,
    columns: Sequence[str] | str | None = None,
    entries: tuple[int | None, int | None] | None = None,
    *,
    where: str | None = None,
    slices: Sequence[slice | tuple] | None = None,
    batch_rows: int | None = None,
    files: str | None = None,
    channels: Sequence[str | int] | None = None,
    with_entry_numbers: bool = False,
    allow_missing: bool = False,
    entry_start: int | None = None,
    entry_stop: int | None = None,
    filter_name: Sequence[str] | str | None = None,
    cut: str | None = None,
    time: tuple[Any, Any] | None = None,
    with_time: bool = False,
    fill_gaps: bool = False,
    dq: str | None = None,
    compression: str | None = None,
    hit_where: str | None = None,
    mode: str | None = None,
    orientation: str | None = None,
) -> pb.ReadRequest:
    """A ReadRequest from the client's keywords, also in uproot's spellings: ``entry_start``/
    ``entry_stop`` or ``entries=slice(a, b)`` for ``entries=(a, b)``, ``filter_name`` (a glob or a
    list of them) for ``columns``, ``cut`` for ``where``. Event levels: ``hit_where`` (a cut on each
    hit), ``mode`` ("any"/"only", pygama's build_entry_list modes), ``orientation`` ("evt"/"hit")."""
    msg = pb.ReadRequest(dataset=dataset)
    if filter_name is not None:
        if columns:
            raise ValueError("give columns or filter_name, not both")
        columns = filter_name
    if cut is not None:
        if where and where != cut:
            raise ValueError("give where or cut (the same thing), not both")
        where = cut
    if isinstance(entries, slice):
        if entries.step not in (None, 1):
            raise ValueError("entries: a slice with a step is not supported; use where= to thin entries")
        entries = (entries.start, entries.stop)
    if entry_start is not None or entry_stop is not None:
        if entries is not None:
            raise ValueError("give entries or entry_start/entry_stop, not both")
        entries = (entry_start, entry_stop)
    for name, value in zip(("time_start", "time_stop"), time or (None, None)):
        if value is None:
            continue
        if isinstance(value, str):
            setattr(msg, name + "_iso", value)
        elif hasattr(value, "isoformat"):          # datetime (naive = UTC)
            setattr(msg, name + "_iso", value.isoformat())
        else:
            setattr(msg, name, float(value))
    msg.with_time, msg.fill_gaps = with_time, fill_gaps
    if dq:
        msg.dq = dq
    if isinstance(columns, str):
        columns = [columns]
    msg.columns.extend(columns or [])
    if entries is not None:
        start, stop = entries
        if start is not None:
            msg.entry_start = int(start)
        if stop is not None:
            msg.entry_stop = int(stop)
    for s in slices or ():
        s = s if isinstance(s, slice) else slice(*s)
        a = msg.slices.add()
        if s.start is not None:
            a.start = s.start
        if s.stop is not None:
            a.stop = s.stop
        if s.step is not None:
            a.step = s.step
    if batch_rows is not None:
        msg.batch_rows = batch_rows
    if where:
        msg.where = where
    if files:
        msg.files = files
    msg.channels.extend(str(c) for c in channels or ())
    msg.with_entry_numbers = with_entry_numbers
    msg.allow_missing = allow_missing
    if compression:
        msg.compression = compression
    if hit_where:
        msg.hit_where = hit_where
    if mode:
        msg.mode = mode
    if orientation:
        msg.orientation = orientation
    return msg


class Client:
    """A connection to an arrowroot server.

    >>> c = Client("grpc://127.0.0.1:8815")
    >>> df = c.read("hep/events.root:events", ["nMuon", "Muon_*"], entries=(0, 1000), library="pd")
    """

    def __init__(
        self,
        location: str = "grpc://127.0.0.1:8815",
        *,
        threads: int = 4,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
        discover: bool = True,
        tls_root_certs: bytes | None = None,
        cert_chain: bytes | None = None,
        private_key: bytes | None = None,
        compression: str | None = None,
        **flight_kwargs: Any,
    ):
        """``compression``: IPC body codec asked for on every read ("lz4", "zstd", "none"; None = the
        server's default); a read's own ``compression=`` wins. zstd pays on slow links, none locally.

        Credentials: ``username``/``password``, ``token`` (a login token, API key, OIDC/WLCG JWT or
        JupyterHub token) or ``token_file``; with none of them the token the user already has is
        found (``clients/bearer.py``: ``$BEARER_TOKEN``, ``$BEARER_TOKEN_FILE``,
        ``$XDG_RUNTIME_DIR/bt_u$UID``, ``/tmp/bt_u$UID``, ``$JUPYTERHUB_API_TOKEN``) unless
        ``discover=False``. ``token_source`` says where the token came from."""
        if tls_root_certs is not None:
            flight_kwargs["tls_root_certs"] = tls_root_certs
        if cert_chain is not None:
            flight_kwargs["cert_chain"] = cert_chain
            flight_kwargs["private_key"] = private_key
        self.location = location
        self.threads = max(1, threads)
        self.compression = compression
        self._flight_kwargs = flight_kwargs
        self._flight = fl.FlightClient(location, **flight_kwargs)
        self._pool: dict[str, fl.FlightClient] = {}  # one connection per data-node location
        self._pool_lock = threading.Lock()
        self._headers: list[tuple[bytes, bytes]] = []
        #: where the bearer token came from ("token=", "token_file", "$BEARER_TOKEN_FILE", ...; None: none)
        self.token_source: str | None = "token=" if token else None
        if token_file is not None and not token:
            token, self.token_source = read_token_file(token_file), "token_file"
        if not token and username is None and discover:
            found = find_token()
            if found is not None:
                token, self.token_source = found
        if token:
            self._headers.append((b"authorization", f"Bearer {token}".encode()))
        elif username is not None:
            with translate():
                pair = self._flight.authenticate_basic_token(username, password or "")
            self._headers.append(pair)

    # ------------------------------------------------------------ plumbing

    @property
    def flight(self) -> fl.FlightClient:
        """The underlying pyarrow FlightClient, for anything not wrapped here."""
        return self._flight

    def _options(self) -> fl.FlightCallOptions:
        return fl.FlightCallOptions(headers=self._headers)

    def close(self) -> None:
        with self._pool_lock:
            pooled, self._pool = list(self._pool.values()), {}
        for c in pooled:
            c.close()
        self._flight.close()

    def _connection(self, uri: str) -> fl.FlightClient:
        """The pooled connection for an endpoint location (this one for "reuse")."""
        if not uri or uri.startswith(REUSE_CONNECTION) or uri == self.location:
            return self._flight
        with self._pool_lock:
            c = self._pool.get(uri)
            if c is None:
                c = self._pool[uri] = fl.FlightClient(uri, **self._flight_kwargs)
            return c

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ catalog

    def datasets(self, name: str | None = None, **criteria: Any) -> pa.Table:
        """Datasets (name, entries, bytes, columns) matching the criteria, as an Arrow table.

        ``name`` is a shell glob; ``format=``, ``kind=``, ``has_column=`` and
        ``attributes={...}`` narrow the search.
        """
        rows: dict[str, list] = {"name": [], "entries": [], "bytes": [], "columns": []}
        for info in self.dataset_infos(name, **criteria):
            rows["name"].append(info.descriptor.path[0].decode())
            rows["entries"].append(info.total_records)
            rows["bytes"].append(info.total_bytes)
            rows["columns"].append(info.schema.names)
        return pa.table(rows, schema=pa.schema([("name", pa.string()), ("entries", pa.int64()),
                                                ("bytes", pa.int64()), ("columns", pa.list_(pa.string()))]))

    def dataset_infos(self, name: str | None = None, **criteria: Any) -> Iterator[fl.FlightInfo]:
        """The FlightInfo of each matching dataset (its schema carries the dataset's attributes as
        ``arrowroot.attributes`` metadata); the criteria of :meth:`datasets`."""
        if name is not None:
            criteria["name"] = name
        payload = json.dumps(criteria).encode() if criteria else b""
        with translate():
            yield from self._flight.list_flights(payload, options=self._options())

    def sql_batches(self, query: str) -> pa.RecordBatchReader:
        """Run a SQL query through the server's Flight SQL front end (datasets are tables:
        ``SELECT count(*) FROM "hep/events.root:events"``); streams the result."""
        from arrowroot.protos import flight_sql as fsql

        desc = fl.FlightDescriptor.for_command(fsql.pack(fsql.CommandStatementQuery(query=query)))
        with translate():
            info = self._flight.get_flight_info(desc, options=self._options())
        return self.read_info(info)

    def sql(self, query: str, *, library: str = "pa") -> Any:
        """:meth:`sql_batches` into one object (``library`` as in :meth:`read`)."""
        with translate():
            table = self.sql_batches(query).read_all()
        return convert(table, library)

    def schema(self, dataset: str, columns: Sequence[str] | None = None, **kwargs: Any) -> pa.Schema:
        """The Arrow schema a read of these columns would have (answered from the catalog)."""
        desc = fl.FlightDescriptor.for_command(_request(dataset, columns, **kwargs).SerializeToString())
        with translate():
            return self._flight.get_schema(desc, options=self._options()).schema

    def flight_info(self, dataset: str, columns: Sequence[str] | str | None = None,
                    entries: tuple[int | None, int | None] | None = None, **kwargs: Any) -> fl.FlightInfo:
        if kwargs.get("compression") is None:
            kwargs["compression"] = self.compression
        desc = fl.FlightDescriptor.for_command(_request(dataset, columns, entries, **kwargs).SerializeToString())
        with translate():
            return self._flight.get_flight_info(desc, options=self._options())

    def action(self, name: str, body: dict | None = None) -> Any:
        """Run a server action (health, rescan, stats, ...) and return its JSON answer."""
        payload = json.dumps(body or {}).encode()
        with translate():
            results = list(self._flight.do_action(fl.Action(name, payload), options=self._options()))
        answers = [json.loads(r.body.to_pybytes()) for r in results]
        return answers[0] if len(answers) == 1 else answers

    def files(self, dataset: str, where: str | None = None, channels: Sequence[str | int] | None = None) -> pa.Table:
        """Files of a (multi-file) dataset with their parsed keys, like pygama's FileDB:
        ``path``, one column per file key (typed: run numbers as integers, timestamps as
        timestamps), ``entries``, ``size`` and, for per-channel datasets, ``channels``.

        A level (``l200/hit``, ``l200/evt``) has one row per file key instead: the keys, one
        boolean column per tier (is its file there; pygama's ``file_status`` bits, also as the
        integer ``file_status``), ``<tier>_file`` and ``<tier>_size``, ``entries``, ``complete``,
        ``missing`` (the tiers a key lacks: such keys are left out of reads unless
        ``allow_missing``) and ``misaligned``.

        ``where`` is a file-key filter (``"run >= 10 and type == 'cal'"``), the same
        language as ``read(..., files=...)``; on a level it may use the tier columns too
        (``"not complete"``, ``"file_status == 7"``).
        """
        body = {"dataset": dataset}
        if where:
            body["where"] = where
        if channels:
            body["channels"] = [str(c) for c in channels]
        with translate():
            results = list(self._flight.do_action(fl.Action("files", json.dumps(body).encode()),
                                                  options=self._options()))
        return pa.ipc.open_stream(results[0].body).read_all()

    # ------------------------------------------------------------ data

    def read_batches(self, dataset: str, columns: Sequence[str] | str | None = None,
                     entries: tuple[int | None, int | None] | None = None, **kwargs: Any) -> pa.RecordBatchReader:
        """Stream the requested rows as record batches, in entry order.

        Endpoints are fetched in parallel (``threads`` at a time); each has a small
        queue, so memory stays bounded however large the read.
        """
        info = self.flight_info(dataset, columns, entries, **kwargs)
        skipped = notes(info).get("skipped_columns")
        if skipped:
            warnings.warn(skipped_message(dataset, skipped), UnreadableColumnsWarning, stacklevel=2)
        left = notes(info).get("left_out")
        if left:
            warnings.warn(left_out_message(dataset, left), IncompleteKeysWarning, stacklevel=2)
        return self.read_info(info)

    def read_info(self, info: fl.FlightInfo) -> pa.RecordBatchReader:
        """Stream a FlightInfo's endpoints in order, each from its locations (see
        ``endpoint_batches``): for a FlightInfo obtained once and read later."""
        return pa.RecordBatchReader.from_batches(info.schema, self._fetch(info))

    def endpoint_batches(self, endpoint: fl.FlightEndpoint) -> Iterator[pa.RecordBatch]:
        """The batches of one endpoint, from its first location that answers.

        An empty location list (or ``arrow-flight-reuse-connection://?``) means this
        client's own connection. When a location is down, or dies mid-stream, the next
        one is asked for the same ticket and the rows already delivered are skipped, so
        the caller sees every row exactly once.
        """
        uris = [loc.uri.decode() if isinstance(loc.uri, bytes) else str(loc.uri) for loc in endpoint.locations]
        uris = uris or [""]
        delivered = 0
        failures: list[str] = []
        last: BaseException | None = None
        for uri in uris:
            try:
                connection = self._connection(uri)
            except pa.ArrowInvalid as exc:  # a location pyarrow cannot parse: try the next
                last = exc
                failures.append(f"{uri}: {exc}")
                continue
            try:
                with translate():
                    reader = connection.do_get(endpoint.ticket, options=self._options()).to_reader()
                    skip = delivered
                    for batch in reader:
                        if skip:
                            if batch.num_rows <= skip:
                                skip -= batch.num_rows
                                continue
                            batch, skip = batch.slice(skip), 0
                        delivered += batch.num_rows
                        yield batch
                return
            except _RETRY_ELSEWHERE as exc:
                last = exc
                failures.append(f"{uri or self.location}: {exc}")
        if len(failures) == 1 and isinstance(last, Unavailable):
            raise last
        raise Unavailable("no location of the endpoint answered: " + "; ".join(failures)) from last

    def _fetch(self, info: fl.FlightInfo) -> Iterator[pa.RecordBatch]:
        endpoints = list(info.endpoints)
        if len(endpoints) <= 1 or self.threads == 1:
            for ep in endpoints:
                yield from self.endpoint_batches(ep)
            return
        stop = threading.Event()
        queues = [queue.Queue(maxsize=4) for _ in endpoints]

        def fetch(i: int) -> None:
            q = queues[i]
            try:
                for batch in self.endpoint_batches(endpoints[i]):
                    while not stop.is_set():
                        try:
                            q.put(batch, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(_DONE)
            except BaseException as exc:
                q.put(exc)

        pool = ThreadPoolExecutor(max_workers=min(self.threads, len(endpoints)))
        try:
            for i in range(len(endpoints)):
                pool.submit(fetch, i)
            for q in queues:
                while True:
                    item = q.get()
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        with translate():
                            raise item
                    yield item
        finally:
            stop.set()
            for q in queues:  # unblock producers so the pool can finish
                while not q.empty():
                    q.get_nowait()
            pool.shutdown(wait=False, cancel_futures=True)

    def channels(self, channel: str = "*", **criteria: Any) -> pa.Table:
        """Time-series datasets whose channel matches a glob (``rate=[lo, hi]``, ``unit=``,
        ``time=[a, b]`` narrow it), like gwpy's ``find``: name, channel, rate, unit, scale, t0, t_end."""
        payload = json.dumps({"channel": channel, **criteria}).encode()
        rows: dict[str, list] = {k: [] for k in ("name", "channel", "rate", "unit", "scale", "t0", "t_end")}
        with translate():
            for info in self._flight.list_flights(payload, options=self._options()):
                attrs = json.loads((info.schema.metadata or {}).get(b"arrowroot.attributes", b"{}"))
                series = attrs.get("timeseries") or {}
                rows["name"].append(info.descriptor.path[0].decode())
                for k in ("channel", "rate", "unit", "scale", "t0", "t_end"):
                    rows[k].append(series.get(k))
        return pa.table(rows, schema=pa.schema([("name", pa.string()), ("channel", pa.string()),
                                                ("rate", pa.float64()), ("unit", pa.string()),
                                                ("scale", pa.string()), ("t0", pa.float64()),
                                                ("t_end", pa.float64())]))

    def read_timeseries(self, channel: str, start: Any = None, end: Any = None, *, dataset: str | None = None,
                        library: str = "pa", with_time: bool = True, fill_gaps: bool | None = None,
                        column: str | None = None, time_index: str | None = None, **kwargs: Any) -> Any:
        """Samples of one channel with start <= t < end (seconds in the channel's time scale,
        ISO-8601 strings or datetimes). The channel is found by name (``channels``) unless
        ``dataset`` names it. ``library``: "pa" (pyarrow.Table with a ``time`` column and the
        gaps in its ``arrowroot.timeseries`` metadata), "gwpy" (a gwpy TimeSeries with t0, dt,
        unit, channel; gaps filled with NaN) or "pd" (a DataFrame indexed by time: GPS seconds
        printed in full, or ``time_index="utc"`` for a UTC DatetimeIndex; UTC channels always
        have a DatetimeIndex)."""
        from .timeseries import series_meta, to_gwpy, to_pandas

        if dataset is None:
            found = self.channels(channel)["name"].to_pylist()
            if len(found) != 1:
                from .errors import InvalidRequest
                raise InvalidRequest(f"channel {channel!r}: " + (
                    "no time-series dataset has it" if not found else
                    f"{len(found)} datasets have it ({', '.join(found[:5])}); pass dataset="))
            dataset = found[0]
        if fill_gaps is None:
            fill_gaps = library == "gwpy"
        table = self.read(dataset, column, time=(start, end), with_time=with_time and library != "gwpy",
                          fill_gaps=fill_gaps, **kwargs)
        meta = series_meta(table.schema)
        if library == "gwpy":
            name = column or next(n for n in table.column_names if n != "time")
            return to_gwpy(table, name, meta)
        if library in ("pd", "pandas"):
            return to_pandas(table, meta, time_index)
        return convert(table, library)

    def follow(self, dataset: str, columns: Sequence[str] | str | None = None,
               entries: tuple[int | None, int | None] | None = None, *, resume: str | None = None,
               reconnect: float = 0.0, heartbeats: bool = False, **kwargs: Any) -> Follower:
        """Follow a dataset as it grows: an iterator of record batches — everything that matches now,
        then new entries (new files, grown files, new samples) as the server indexes them, with the same
        columns, ``where``, slices and file filters as :meth:`read`. ``time=(T, None)`` follows a channel
        from time T; ``entries=(-N, None)`` starts with the last N entries.

        The returned :class:`~arrowroot.clients.follow.Follower` keeps ``resume_token``, the position
        after the last batch it gave you: ``follow(..., resume=token)`` continues there with no gap and
        no duplicate (after a crash, or a server restart). ``reconnect``: seconds to keep trying to
        reconnect (with the token) when the server goes away. ``heartbeats``: also yield the empty
        batches the server sends while nothing new comes."""
        if kwargs.get("compression") is None:
            kwargs["compression"] = self.compression
        base = _request(dataset, columns, entries, **kwargs)
        base.follow = True

        def request(token: str | None) -> fl.FlightDescriptor:
            msg = pb.ReadRequest()
            msg.CopyFrom(base)
            if token:
                msg.resume = token
            return fl.FlightDescriptor.for_command(msg.SerializeToString())

        return Follower(self, request, resume, reconnect, heartbeats)

    def read(self, dataset: str, columns: Sequence[str] | str | None = None,
             entries: tuple[int | None, int | None] | None = None, *, library: str = "pa",
             **kwargs: Any) -> Any:
        """Read into one object: ``library`` is "pa" (pyarrow.Table), "pd" (pandas; jagged columns as
        awkward-pandas columns, as uproot gives them),
        "pl" (polars), "ak" (awkward) or "np" (dict of numpy arrays), as in uproot.

        Levels read like pygama's DataLoader: ``read("l200/hit", ["cuspEmax_ctc_cal", "AoE"],
        where="cuspEmax_ctc_cal > 25 and AoE > -3", files="run >= 10", channels=[1084803])`` is one
        row per hit; ``read("l200/evt", ..., hit_where=..., mode="any", where="not muon_veto")`` one row
        per event (hit columns as lists), or per hit with ``orientation="hit"``."""
        info = self.flight_info(dataset, columns, entries, **kwargs)
        skipped = notes(info).get("skipped_columns")
        if skipped:
            warnings.warn(skipped_message(dataset, skipped), UnreadableColumnsWarning, stacklevel=2)
        left = notes(info).get("left_out")
        if left:
            warnings.warn(left_out_message(dataset, left), IncompleteKeysWarning, stacklevel=2)
        table = self.read_info(info).read_all()
        return convert(table, library)

    # ------------------------------------------------------------ workspace

    def put(self, name: str, data: pa.Table | pa.RecordBatchReader | Sequence[pa.RecordBatch], *,
            mode: str = "create", parent: str | None = None, metadata: dict[str, str] | None = None) -> dict:
        """Store a table (or a stream of batches) as ``home/<you>/...`` on the server.

        ``mode``: "create" (the name must be free), "append" (same columns) or "replace".
        With ``parent``, the rows are derived columns of that dataset: an int64 ``entry``
        column (from ``with_entry_numbers``) says which parent entry each row extends.
        Nothing is kept unless every batch arrives: the last message says "commit" (an
        interrupted put leaves nothing on the server). Returns the server's summary.
        """
        msg = pb.PutRequest(dataset=name, mode=mode, parent=parent or "")
        msg.metadata.update({str(k): str(v) for k, v in (metadata or {}).items()})
        if isinstance(data, pa.Table):
            schema, batches = data.schema, data.to_batches(max_chunksize=65_536)
        elif isinstance(data, pa.RecordBatchReader):
            schema, batches = data.schema, data
        else:
            batches = list(data)
            if not batches:
                raise ValueError("put: no batches given (send at least an empty table for its schema)")
            schema = batches[0].schema
        desc = fl.FlightDescriptor.for_command(msg.SerializeToString())
        with translate():
            writer, reader = self._flight.do_put(desc, schema, options=self._options())
            try:
                for batch in batches:
                    writer.write_batch(batch)
                writer.write_metadata(pa.py_buffer(PUT_COMMIT))  # all sent: only now may the server keep it
                writer.done_writing()
                answer = reader.read()
            except BaseException:
                # interrupted (Ctrl-C, the data source raised): the stream ends without the commit
                # message, so the server keeps nothing; its answer to that is not the error to show
                try:
                    writer.close()
                except Exception:
                    pass
                raise
            writer.close()
        return json.loads(answer.to_pybytes()) if answer is not None else {}

    def skim(self, name: str, parent: str, where: str = "", *, materialize: bool = False,
             columns: Sequence[str] | None = None, mode: str = "create",
             metadata: dict[str, str] | None = None, files: str | None = None,
             channels: Sequence[str | int] | None = None, hit_where: str | None = None,
             hit_mode: str | None = None) -> dict:
        """Keep the entries of ``parent`` passing ``where`` as ``name``: only their entry
        numbers are stored (reads go to the parent's files), or a copy with ``materialize``.

        On a level this is pygama's ``build_entry_list``, kept on the server and shared: ``files``
        and ``channels`` select as in ``read``; on an event level ``hit_where`` and ``hit_mode``
        ("any"/"only") select hits, the skim keeps the event numbers and reading it gives the same
        events with the same hits."""
        body: dict[str, Any] = {"dataset": name, "parent": parent, "where": where, "materialize": materialize,
                                "mode": mode, "metadata": dict(metadata or {})}
        if columns:
            body["columns"] = list(columns)
        if files:
            body["files"] = files
        if channels:
            body["channels"] = [str(c) for c in channels]
        if hit_where:
            body["hit_where"] = hit_where
        if hit_mode:
            body["hit_mode"] = hit_mode
        return self.action("skim", body)

    def lineage(self, name: str) -> list[dict]:
        """Where a workspace dataset came from: itself, then its parents (nearest first)."""
        return self.action("lineage", {"dataset": name})["lineage"]

    def delete(self, name: str) -> None:
        """Delete one of your workspace datasets."""
        self.action("delete", {"dataset": name})

    def rename(self, name: str, to: str) -> None:
        """Rename one of your workspace datasets."""
        self.action("rename", {"dataset": name, "to": to})
