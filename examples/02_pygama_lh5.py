# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A pygama tier as one table: files by key, channels, a cut
#
# A LEGEND-style data production is many LH5 files — one per period, run and data type —
# each with one table per detector channel (`ch1027201/dsp`, ...). The server's
# `arrowroot.toml` declares them as **one dataset** with typed file keys parsed from the file
# names (`{exp}-{period}-{run}-{type}-{timestamp}-tier_{tier}.lh5`), so there are no file
# boundaries to handle here: pick files by their keys (like pygama's `FileDB`), channels by id,
# and let the server apply a cut.
#
# **Where the data comes from.** The server location is read from `ARROWROOT_URL` (the
# JupyterLab container sets `grpc://arrowroot:8815`), the dataset name from
# `ARROWROOT_LH5_DATASET` (default `l200/dsp`, the sample tier `examples/sample_data.py` writes
# with its `arrowroot.toml`; in Docker: `docker compose -f docker/compose.yaml --profile demo run
# --rm sample-data`). The notebook never writes data itself: `tests/test_notebooks.py` writes
# the sample files, serves them and runs it against that server.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from arrowroot.clients import Client

URL = os.environ.get("ARROWROOT_URL", "grpc://127.0.0.1:8815")
DATASET = os.environ.get("ARROWROOT_LH5_DATASET", "l200/dsp")

client = Client(URL)
client.datasets(DATASET).to_pandas()[["name", "entries", "bytes"]]

# %% [markdown]
# ## Files by key
#
# `files()` lists the dataset's files with their keys, typed: `run` and `period` are integers
# (`p03` → 3), `timestamp` a timestamp. A filter in the same small language as cuts selects some.

# %%
files = client.files(DATASET).to_pandas()
files[["period", "run", "type", "timestamp", "entries", "channels"]]

# %%
cal = client.files(DATASET, where="type == 'cal' and period == 3").to_pandas()
print(f"{len(cal)} calibration files in period 3 (of {len(files)} files)")

# %% [markdown]
# ## Columns and channels
#
# LH5 types map to Arrow: `array<1>{real}` → a column, a vector of vectors (`tp`) → a list,
# `array_of_equalsized_arrays` (`baseline`) → a fixed-size list. Units travel as field metadata.
# Per-channel tables gain a `channel` column.

# %%
schema = client.schema(DATASET)
for field in schema:
    units = (field.metadata or {}).get(b"units", b"").decode()
    print(f"{field.name:10s} {str(field.type):40s} {units}")

# %%
CHANNEL = 1027201
one = client.read(DATASET, ["energy", "channel"], files="type == 'cal' and period == 3", channels=[CHANNEL],
                  library="pd")
print(f"channel {CHANNEL}, period 3 calibration: {len(one)} events")
one.head()

# %% [markdown]
# ## A cut on the server
#
# Keep good events (`quality == 0`) with a sensible A/E, above 100 keV, from all calibration
# files and both channels; only those rows are sent.

# %%
cut = "quality == 0 and abs(aoe - 1) < 0.1 and energy > 100"
good = client.read(DATASET, ["energy", "aoe", "channel"], files="type == 'cal'", where=cut, library="pd")
everything = client.read(DATASET, ["energy", "aoe", "quality"], files="type == 'cal'", library="pd")
local = everything.query("quality == 0 and abs(aoe - 1) < 0.1 and energy > 100")
assert len(good) == len(local)
print(f"cut kept {len(good)} of {len(everything)} calibration events")
good.groupby("channel").size()

# %% [markdown]
# ## The calibration spectrum
#
# The 228Th-chain lines (239, 583, 727, 861, 2615 keV) and 40K (1461 keV) stand out of the continuum.

# %%
fig, ax = plt.subplots(figsize=(8, 4))
for channel, rows in good.groupby("channel"):
    ax.hist(rows["energy"], bins=np.arange(0, 3000, 5), histtype="step", label=f"ch{channel}")
for line in (238.6, 583.2, 727.3, 860.6, 1460.8, 2614.5):
    ax.axvline(line, color="grey", lw=0.5, ls=":")
ax.set_xlabel("energy [keV]")
ax.set_ylabel("counts / 5 keV")
ax.set_yscale("log")
ax.legend()
plt.show()

# %% [markdown]
# ## Tiers and events: levels
#
# A production has more tiers than `dsp`: `raw`, `dsp` and `hit` are entry-aligned per channel, and the
# time-coincidence map (`tcm`, from pygama's `build_tcm`) groups the hits of all channels into events,
# with an `evt` tier per event. The server's `arrowroot.toml` declares them as **levels**, like pygama's
# `DataLoader` config: `l200/hit` (one row per hit, columns of every tier; a name in two tiers is
# qualified, `dsp.trapEmax`) and `l200/evt` (one row per event, hit columns as lists). The join and the
# cuts run on the server; a cut may use columns of several tiers.

# %%
hits = client.read("l200/hit", ["cuspEmax_ctc_cal", "AoE", "channel"],
                   where="cuspEmax_ctc_cal > 100 and abs(AoE) < 3", library="pd")
events = client.read("l200/evt", ["cuspEmax_ctc_cal", "channel", "multiplicity"], hit_where="cuspEmax_ctc_cal > 100",
                     mode="only", where="muon_veto == False")
kept = pa.compute.list_value_length(events["channel"]).to_numpy()
print(f"{len(hits)} hits pass a cut on the hit and dsp tiers; "
      f"{events.num_rows} events without muon veto have hits above 100 keV")
print(f"hits kept per event: {np.bincount(kept)[1:].tolist()} (of multiplicities "
      f"{np.bincount(events['multiplicity'].to_numpy())[1:].tolist()})")

# %%
client.close()
