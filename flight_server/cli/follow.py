"""``arrowroot get DATASET OUTPUT --follow``: write a followed dataset's rows as they come.

OUTPUT ``-`` prints one JSON object per row on stdout; a ``.csv`` file gets CSV rows, any other
name an Arrow IPC stream (``.arrows``) — each flushed after every batch, so another program can
read them while they grow. Ctrl-C (or SIGTERM) stops it and prints the resume token on stderr;
``--resume TOKEN`` continues there, ``--token-file`` keeps the latest token in a file.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
import pyarrow.csv as pacsv


def _save(path: Path, token: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(token + "\n")
    os.replace(tmp, path)


def follow_to(client: Any, dataset: str, output: Path, columns: list[str] | None, entries: Any,
              kwargs: dict[str, Any], resume: str | None, token_file: Path | None) -> None:
    """Follow ``dataset`` into ``output`` until interrupted (see the module docstring)."""
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    follower = client.follow(dataset, columns, entries, resume=resume, **kwargs)
    rows = 0
    sink: Any = None
    writer: Any = None
    try:
        for batch in follower:
            if str(output) == "-":
                for row in batch.to_pylist():
                    sys.stdout.write(json.dumps(row, default=str) + "\n")
                sys.stdout.flush()
            elif output.suffix.lower() == ".csv":
                if sink is None:
                    sink = open(output, "ab")
                    if sink.tell() == 0:
                        pacsv.write_csv(batch.slice(0, 0), sink)
                pacsv.write_csv(batch, sink, pacsv.WriteOptions(include_header=False))
                sink.flush()
            else:
                if writer is None:
                    sink = pa.OSFile(str(output), "wb")
                    writer = pa.ipc.new_stream(sink, batch.schema)
                writer.write_batch(batch)
                sink.flush()
            rows += batch.num_rows
            if token_file is not None and follower.resume_token:
                _save(token_file, follower.resume_token)
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
        if token_file is not None and follower.resume_token:
            _save(token_file, follower.resume_token)
        if follower.resume_token:
            click.echo(f"followed {rows} rows; continue with --resume {follower.resume_token}", err=True)


__all__ = ["follow_to"]
