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
# # Jagged muons from a ROOT tree
#
# The ROOT files stay on the server; this notebook asks for the branches it needs and gets
# them as Arrow record batches, which become an [awkward](https://awkward-array.org) array —
# jagged branches (`var * float32`, one list of muons per event) stay jagged.
#
# **Where the data comes from.** The server location is read from `ARROWROOT_URL`
# (the JupyterLab container sets `grpc://arrowroot:8815`; the default is a server on this
# machine). The dataset name comes from `ARROWROOT_HEP_DATASET`, by default
# `hep/events.root:events` — the sample file that `examples/sample_data.py` writes (in Docker:
# `docker compose -f docker/compose.yaml --profile demo run --rm sample-data`). The notebook
# itself never writes data: `tests/test_notebooks.py` writes the sample files, serves them and
# runs this notebook against that server.

# %%
import os

import awkward as ak
import matplotlib.pyplot as plt

from arrowroot.clients import Client

URL = os.environ.get("ARROWROOT_URL", "grpc://127.0.0.1:8815")
DATASET = os.environ.get("ARROWROOT_HEP_DATASET", "hep/events.root:events")

client = Client(URL)
client.action("health")

# %% [markdown]
# ## What is there
#
# `datasets()` lists what the server's catalog knows (a shell glob narrows it), `schema()` gives
# the Arrow types of the branches — answered from the catalog, without opening a file.

# %%
client.datasets("*.root*").to_pandas()[["name", "entries", "bytes"]]

# %%
print(client.schema(DATASET, ["nMuon", "Muon_*", "MET_pt"]).to_string(show_field_metadata=False,
                                                                       show_schema_metadata=False))

# %% [markdown]
# ## Read the muons
#
# Columns can be names or globs (`Muon_*`). Only these branches travel over the network.

# %%
events = client.read(DATASET, ["nMuon", "Muon_pt", "Muon_eta", "MET_pt"], library="ak")
print(f"read {len(events)} events with {ak.sum(events.nMuon)} muons")
events.Muon_pt.type.show()

# %% [markdown]
# An entry range reads only part of the tree (entries 1000 to 2000 here), like uproot's
# `entry_start`/`entry_stop`:

# %%
part = client.read(DATASET, ["nMuon", "Muon_pt"], entries=(1000, 2000), library="ak")
print(f"entries 1000-2000: {len(part)} events")

# %% [markdown]
# ## A histogram
#
# All muons' transverse momenta (flattened), and the leading (highest-pT) muon of each event.

# %%
leading = ak.drop_none(ak.max(events.Muon_pt, axis=1))

fig, ax = plt.subplots(figsize=(7, 4))
ax.hist(ak.to_numpy(ak.flatten(events.Muon_pt)), bins=60, range=(0, 120), histtype="step", label="all muons")
ax.hist(ak.to_numpy(leading), bins=60, range=(0, 120), histtype="step", label="leading muon")
ax.set_xlabel(r"muon $p_T$ [GeV]")
ax.set_ylabel("muons / 2 GeV")
ax.set_yscale("log")
ax.legend()
plt.show()

# %% [markdown]
# ## Let the server cut
#
# `where=` is evaluated on the server, batch by batch: only the events that pass are sent.
# The language is Python-like (`and`, `or`, comparisons) with per-event reductions on jagged
# branches (`max`, `count`, `any`, ...). Here: at least two muons, the leading one above 25 GeV,
# both central.

# %%
cut = "nMuon >= 2 and max(Muon_pt) > 25 and all(abs(Muon_eta) < 2.4)"
selected = client.read(DATASET, ["nMuon", "Muon_pt", "Muon_eta"], where=cut, library="ak")

# the same cut, done locally on the full read, selects the same events
# (ak.max of an event without muons is None: fill_none(..., False) rejects it, as the server does)
local = events[(events.nMuon >= 2) & ak.fill_none(ak.max(events.Muon_pt, axis=1) > 25, False)
               & ak.all(abs(events.Muon_eta) < 2.4, axis=1)]
assert len(selected) == len(local)
print(f"server-side cut kept {len(selected)} of {len(events)} events")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
ax.hist(ak.to_numpy(ak.max(selected.Muon_pt, axis=1)), bins=40, range=(0, 120), histtype="stepfilled", alpha=0.6)
ax.set_xlabel(r"leading muon $p_T$ [GeV]")
ax.set_ylabel("events / 3 GeV")
ax.set_title(cut, fontsize=9)
plt.show()

# %%
client.close()
