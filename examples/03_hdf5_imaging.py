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
# # Slices of an HDF5 image stack
#
# An N-D HDF5 dataset is served as one row per first-axis index (one image per row). A read asks
# for a range of images and, per remaining axis, a slice with a step (an HDF5 hyperslab): the
# server reads only that part of the file and sends only those pixels.
#
# **Where the data comes from.** The server location is read from `ARROWROOT_URL` (the
# JupyterLab container sets `grpc://arrowroot:8815`), the dataset names from
# `ARROWROOT_IMAGE_DATASET` (default `lab/scan.h5:entry/data/image`) and
# `ARROWROOT_TABLE_DATASET` (default `lab/scan.h5:detector`), the sample file that
# `examples/sample_data.py` writes (in Docker: `docker compose -f docker/compose.yaml --profile
# demo run --rm sample-data`). The notebook never writes data itself: `tests/test_notebooks.py`
# writes the sample files, serves them and runs it against that server.

# %%
import json
import os

import matplotlib.pyplot as plt

from arrowroot.clients import Client

URL = os.environ.get("ARROWROOT_URL", "grpc://127.0.0.1:8815")
IMAGES = os.environ.get("ARROWROOT_IMAGE_DATASET", "lab/scan.h5:entry/data/image")
TABLE = os.environ.get("ARROWROOT_TABLE_DATASET", "lab/scan.h5:detector")

client = Client(URL)
client.datasets("*.h5*").to_pandas()[["name", "entries", "bytes", "columns"]]

# %% [markdown]
# The schema shows one image per row as a fixed-size list; HDF5 attributes (units, instrument)
# travel as metadata.

# %%
schema = client.schema(IMAGES)
print(schema.to_string(show_schema_metadata=False))
print(json.loads(schema.metadata.get(b"arrowroot.attributes", b"{}")))

# %% [markdown]
# ## Four whole images
#
# `entries=(10, 14)` is the first axis; `library="np"` gives numpy arrays in their natural shape.

# %%
stack = client.read(IMAGES, entries=(10, 14), library="np")["image"]
print(f"images 10-14: numpy {stack.shape} {stack.dtype}")

fig, axes = plt.subplots(1, len(stack), figsize=(12, 3))
for i, (ax, image) in enumerate(zip(axes, stack)):
    ax.imshow(image, cmap="viridis")
    ax.set_title(f"image {10 + i}")
    ax.axis("off")
plt.show()

# %% [markdown]
# ## A hyperslab
#
# `slices=` takes one slice per remaining axis: here the top-left quarter of image 10 at full
# resolution, and the whole image with every second pixel — each read sends only those pixels.

# %%
quarter = client.read(IMAGES, entries=(10, 11), slices=[slice(0, 16), slice(0, 16)], library="np")["image"][0]
coarse = client.read(IMAGES, entries=(10, 11), slices=[slice(None, None, 2), slice(None, None, 2)],
                     library="np")["image"][0]
assert (quarter == stack[0][:16, :16]).all() and (coarse == stack[0][::2, ::2]).all()
print(f"quarter {quarter.shape}, every second pixel {coarse.shape}")

fig, (a, b) = plt.subplots(1, 2, figsize=(8, 4))
a.imshow(quarter, cmap="viridis")
a.set_title("[0:16, 0:16]")
b.imshow(coarse, cmap="viridis")
b.set_title("[::2, ::2]")
plt.show()

# %% [markdown]
# ## The detector table beside the images
#
# 1-D datasets of one group are served together as a table; a cut runs on the server.

# %%
hits = client.read(TABLE, ["energy", "channel"], where="energy > 300 and channel < 8", library="pd")
print(f"{len(hits)} hits above 300 in channels 0-7")
hits.groupby("channel")["energy"].describe()

# %%
client.close()
