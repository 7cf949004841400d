"""Code that reads the page's selection, ready to paste: the arrowroot Client, pyarrow.flight,
ADBC/pandas (Flight SQL) and curl, for the logged-in user (who then types only the password)."""

from __future__ import annotations

import json
import urllib.parse

from starlette.requests import Request

from arrowroot.flight_server.web.door import Door
from arrowroot.flight_server.web.present import quote


def snippets(door: Door, request: Request, sel: dict, user: str | None = None) -> dict[str, str]:
    """Code that reads this selection, for the logged-in user (they type only the password)."""
    host = request.url.hostname or "127.0.0.1"
    loc = door.options.flight_location or f"grpc://{host}:{door.service.ctx.settings.port}"
    scheme, _, rest = loc.partition("://")
    loc = f"{scheme}://{host}:{rest.rpartition(':')[2]}"
    name = sel["dataset"]
    cols = sel.get("columns")
    entries = (sel.get("entry_start"), sel.get("entry_stop"))
    login = user or "USER"
    auth = f', username={login!r}, password=getpass.getpass()' if door.auth_on else ""
    args = [repr(name), repr(cols) if cols else "None"]
    if entries != (None, None):
        args.append(f"entries={entries!r}")
    if sel.get("where"):
        args.append(f"where={sel['where']!r}")
    start = sel.get("time_start", sel.get("time_start_iso"))
    stop = sel.get("time_stop", sel.get("time_stop_iso"))
    if start is not None or stop is not None:
        args.append(f"time=({start!r}, {stop!r})")
    for key in ("files", "dq"):
        if sel.get(key):
            args.append(f"{key}={sel[key]!r}")
    if sel.get("channels"):
        args.append(f"channels={sel['channels']!r}")
    for key in ("with_time", "fill_gaps", "allow_missing"):
        if sel.get(key):
            args.append(f"{key}=True")
    imports = "import getpass\n" if door.auth_on else ""
    client = (f"{imports}from arrowroot.clients import Client\n\n"
              f"with Client({loc!r}{auth}) as c:\n"
              f"    table = c.read({', '.join(args)})\n")
    request_json = json.dumps({k: v for k, v in sel.items()})
    options = (f'fl.FlightCallOptions(headers=[client.authenticate_basic_token({login!r}, getpass.getpass())])'
               if door.auth_on else "fl.FlightCallOptions()")
    pyflight = (f"{'import getpass' + chr(10) if door.auth_on else ''}import pyarrow as pa\nimport pyarrow.flight as fl\n\n"
                f"client = fl.connect({loc!r})\n"
                f"options = {options}\n"
                f"request = {request_json!r}\n"
                "info = client.get_flight_info(fl.FlightDescriptor.for_command(request), options)\n"
                "table = pa.concat_tables([client.do_get(ep.ticket, options).read_all() for ep in info.endpoints])\n")
    select = ", ".join('"' + c.replace('"', '""') + '"' for c in cols) if cols else "*"
    sql_from = '"' + name.replace('"', '""') + '"'
    if sel.get("entry_start") is not None or sel.get("entry_stop") is not None:
        first = sel.get("entry_start") or 0
        count = f"LIMIT {max(0, sel['entry_stop'] - first)} " if sel.get("entry_stop") is not None else ""
        sql_from = f"(SELECT * FROM {sql_from} {count}OFFSET {first})"  # the range, then the cut
    query = f"SELECT {select} FROM {sql_from}" + (f" WHERE {sel['where']}" if sel.get("where") else "")
    note = "# slices, file filters and time ranges have no SQL form: use the Client or pyarrow.flight\n" \
        if any(sel.get(k) for k in ("slices", "files", "channels", "time_start", "time_stop", "time_start_iso",
                                    "time_stop_iso", "dq")) else ""
    adbc_auth = f',\n                        db_kwargs={{"username": {login!r}, "password": getpass.getpass()}}' \
        if door.auth_on else ""
    adbc = (f"{'import getpass' + chr(10) if door.auth_on else ''}import adbc_driver_flightsql.dbapi as flight_sql\n"
            f"import pandas as pd\n\n{note}"
            f"with flight_sql.connect({loc!r}{adbc_auth}) as conn:\n"
            f"    df = pd.read_sql({query!r}, conn)\n")
    base = f"{request.url.scheme}://{request.url.netloc}"
    query = {k: v for k, v in sel.items() if k in ("entry_start", "entry_stop", "where", "files", "dq",
                                                    "time_start", "time_stop")}
    query.update({k[:-4]: v for k, v in sel.items() if k in ("time_start_iso", "time_stop_iso")})
    query.update({k: "true" for k in ("with_time", "fill_gaps", "allow_missing") if sel.get(k)})
    if cols:
        query["columns"] = ",".join(cols)
    if sel.get("slices"):
        query["slices"] = request.query_params.get("slices", "")
    if sel.get("channels"):
        query["channels"] = ",".join(sel["channels"])
    url = f"{base}/api/data/{quote(name)}?" + urllib.parse.urlencode({**query, "format": "csv"})
    header = ' -H "Authorization: Bearer $ARROWROOT_TOKEN"' if door.auth_on else ""
    curl = f"curl -fsS{header} -o data.csv '{url}'\n"
    return {"arrowroot Client": client, "pyarrow.flight": pyflight, "ADBC / pandas (Flight SQL)": adbc,
            "curl (CSV; format=parquet|arrow|feather|hdf5)": curl}
