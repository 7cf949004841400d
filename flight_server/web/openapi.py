"""The OpenAPI 3.1 description of ``/api/`` (served at ``/api/openapi.json``)."""

from __future__ import annotations

from arrowroot.flight_server.export.formats import FORMATS

from typing import Any

MEDIA = {name: fmt.media_type.split(";")[0] for name, fmt in FORMATS.items()}


def _q(name: str, description: str, schema: dict | None = None, **extra: Any) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}, **extra}


NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "Dataset name, e.g. hep/events.root:events (slashes stay as they are)."}

ERRORS = {
    str(code): {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for code, text in [(400, "Invalid request (the message names the field), or a download over the size limit"),
                       (401, "Authentication required or credentials wrong"),
                       (403, "Not allowed"),
                       (404, "No such dataset or column (hidden datasets answer the same)"),
                       (503, "The file changed since it was indexed; retry after the re-index")]
}

SEARCH = [
    _q("q", "Search box: words matched anywhere in names, titles, attributes and columns (all must match), "
            "exact matches first; a glob when it has * ? ["),
    _q("name", "Shell glob on dataset names, e.g. hep/*"),
    _q("format", "root, hdf5 or lh5"),
    _q("kind", "ttree, hdf5.table, hdf5.dataset, lh5.table, ..."),
    _q("has_column", "Only datasets with this column"),
    _q("attr", "Attribute value as key=value (value read as JSON when it parses); repeatable",
       {"type": "array", "items": {"type": "string"}}, explode=True),
    _q("attributes", "Attribute values as a JSON object"),
]

SELECTION = [
    _q("columns", "Column names or globs, comma-separated or repeated (default: all)",
       {"type": "array", "items": {"type": "string"}}, explode=True),
    _q("entry_start", "First entry (negative counts from the end)", {"type": "integer"}),
    _q("entry_stop", "Entry after the last", {"type": "integer"}),
    _q("where", "Server-side cut, e.g. nMuon >= 2 and MET_pt > 40"),
    _q("slices", "HDF5 N-D: one start:stop[:step] per axis after the entries, comma-separated, e.g. 0:4,::8"),
    _q("files", "Multi-file datasets: file-key filter, e.g. run >= 10"),
    _q("channels", "Multi-file datasets: channel ids, comma-separated"),
    _q("time_start", "Time series: first time, GPS/channel seconds or ISO-8601 (e.g. 2015-09-14T09:50:45Z)"),
    _q("time_stop", "Time series: time after the last (seconds or ISO-8601)"),
    _q("with_time", "Time series: add a time column (true/false)", {"type": "boolean"}),
    _q("fill_gaps", "Time series: fill gaps with null rows on one regular grid (true/false)", {"type": "boolean"}),
    _q("with_entry_numbers", "Add the dataset-wide entry number as a first column (true/false)", {"type": "boolean"}),
    _q("allow_missing", "Multi-file datasets: read columns some files lack as nulls instead of failing",
       {"type": "boolean"}),
    _q("time_last", "Time series: the last N seconds of the coverage (instead of time_start/time_stop)",
       {"type": "number"}),
    _q("dq", "Time series: keep only the time where this data-quality expression holds, e.g. DATA & CBC_CAT1"),
    _q("hit_where", "Event levels: a cut on each hit, e.g. cuspEmax_ctc_cal > 500"),
    _q("mode", "Event levels: how hit_where selects an event's hits: only (the passing hits) or any",
       {"type": "string", "enum": ["only", "any"]}),
    _q("orientation", "Event levels: evt (a row per event) or hit (a row per hit)",
       {"type": "string", "enum": ["evt", "hit"]}),
]

VIEW = [
    _q("view", "histogram (ROOT TH1/TH2/TH3/TProfile), series (time or entry axis, min/max per pixel), plane "
               "(N-D arrays), column (histogram of a column), scatter (two columns)",
       {"type": "string", "enum": ["histogram", "series", "plane", "column", "scatter"]}),
    _q("column", "series, plane, column: the column"),
    _q("x", "scatter: the column on x"), _q("y", "scatter: the column on y"),
    _q("pixels", "series: the plot's width in pixels (10-4000, default 1000)", {"type": "integer"}),
    _q("plane", "plane: one index or ':' per axis, entries first, two ':' (e.g. 7,:,:)"),
    _q("axis", "histogram (TH3): the axis sliced, x, y or z"),
    _q("index", "histogram (TH3): the bin along it, 1..n", {"type": "integer"}),
    _q("bins", "column: number of bins (integers: one per value up to this many)", {"type": "integer"}),
    _q("lo", "column: lower edge", {"type": "number"}), _q("hi", "column: upper edge", {"type": "number"}),
    _q("per", "column: 'count' histograms the number of elements per entry of a jagged column"),
]


def openapi(version: str, formats: list[str]) -> dict[str, Any]:
    """The document: paths, parameters, answers and the error shape."""
    auth = [{"bearer": []}, {"apiKey": []}, {"basic": []}, {"cookie": []}, {}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "arrowroot HTTP API", "version": version,
                 "description": "The catalog and data of an arrowroot server over HTTP: the same datasets, "
                                "users, grants and error messages as its Arrow Flight port."},
        "security": auth,
        "paths": {
            "/api/health": {"get": {"summary": "Liveness and the number of visible datasets",
                                    "responses": {"200": {"description": "status, version, datasets, indexing"}}}},
            "/api/datasets": {"get": {
                "summary": "Datasets the caller may read, optionally matching list_flights criteria",
                "parameters": SEARCH,
                "responses": {"200": {"description": "count (matches), total (visible), datasets",
                                      "content": {"application/json": {"schema": {
                                          "type": "object", "properties": {
                                              "count": {"type": "integer"}, "total": {"type": "integer"},
                                              "datasets": {"type": "array",
                                                           "items": {"$ref": "#/components/schemas/DatasetSummary"}}}}}}},
                              **{k: ERRORS[k] for k in ("400", "401")}}}},
            "/api/datasets/{name}": {"get": {
                "summary": "One dataset: entries, sizes, attributes, schema, files and keys",
                "parameters": [NAME],
                "responses": {"200": {"description": "The dataset",
                                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Dataset"}}}},
                              **{k: ERRORS[k] for k in ("401", "404")}}}},
            "/api/view/{name}": {"get": {
                "summary": "One view's numbers, reduced on the server for drawing (the page's plots); "
                           "/plot/{view}/{name} answers the same view as a PNG",
                "parameters": [NAME, *VIEW, *SELECTION],
                "responses": {"200": {"description": "The view as JSON (see the README's web section)",
                                      "content": {"application/json": {"schema": {"type": "object"}}}},
                              **{k: ERRORS[k] for k in ("400", "401", "404")}}}},
            "/api/data/{name}": {"get": {
                "summary": "A selection of a dataset's data, streamed",
                "parameters": [NAME, *SELECTION,
                               _q("format", "Output format (default arrow)", {"type": "string", "enum": formats,
                                                                              "default": "arrow"}),
                               _q("compression", "arrow and feather: compress record batch bodies",
                                  {"type": "string", "enum": ["none", "lz4", "zstd"]})],
                "responses": {"200": {"description": "The rows; nested cells are JSON text in CSV and "
                                                     "flattened_data/cumulative_length groups in HDF5",
                                      "content": {MEDIA[f]: {"schema": {"type": "string", "format": "binary"}}
                                                  for f in formats}},
                              **ERRORS}}},
            "/api/follow/{name}": {"get": {
                "summary": "Follow a dataset as it grows (live data): what matches now, then new entries as "
                           "they are indexed, with heartbeats while idle; never ends by itself",
                "parameters": [NAME, *SELECTION,
                               _q("format", "sse: one 'rows' event per batch, its id the resume token; arrow: "
                                  "one IPC stream, each batch's custom metadata holding 'resume'",
                                  {"type": "string", "enum": ["sse", "arrow"], "default": "sse"}),
                               _q("resume", "continue after this resume token (or send Last-Event-ID)",
                                  {"type": "string"})],
                "responses": {"200": {"description": "The stream (until the client closes it)",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}},
                                                  "application/vnd.apache.arrow.stream": {
                                                      "schema": {"type": "string", "format": "binary"}}}},
                              **ERRORS}}},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "session token or API key"},
                "basic": {"type": "http", "scheme": "basic"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "arrowroot_session"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error", "status", "message"], "properties": {
                    "error": {"type": "string"}, "status": {"type": "integer"}, "message": {"type": "string"}}},
                "DatasetSummary": {"type": "object", "properties": {
                    "name": {"type": "string"}, "kind": {"type": "string"}, "format": {"type": "string"},
                    "entries": {"type": "integer"}, "bytes": {"type": "integer"},
                    "file_bytes": {"type": "integer"}, "files": {"type": "integer"},
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "attributes": {"type": "object"}}},
                "Dataset": {"allOf": [{"$ref": "#/components/schemas/DatasetSummary"}, {"type": "object", "properties": {
                    "schema": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "type": {"type": "string"}, "source_type": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}}, "units": {"type": "string"},
                        "attributes": {"type": "object"}, "bytes": {"type": ["integer", "null"]}}}},
                    "unreadable": {"type": "array", "items": {"type": "object"}},
                    "parts": {"type": "array", "items": {"type": "object", "properties": {
                        "path": {"type": "string"}, "object": {"type": "string"},
                        "entry_offset": {"type": "integer"}, "entries": {"type": "integer"},
                        "bytes": {"type": "integer"}, "channel": {"type": ["string", "null"]},
                        "keys": {"type": "object"}}}}}}]},
            },
        },
    }
