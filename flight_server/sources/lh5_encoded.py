"""Compressed LH5 waveforms, decoded server-side with legend-lh5io's own decoders.

legend-lh5io writes waveforms compressed with radware-sigcompress or ULEB128 zig-zag
differences as two LH5 objects:

* ``array_of_encoded_equalsized_arrays<1,1>{real}`` (ArrayOfEncodedEqualSizedArrays):
  every waveform decodes to the same ``decoded_size`` (a scalar) → ``fixed_size_list<int32>``;
* ``array<1>{encoded_array<1>{real}}`` (VectorOfEncodedVectors): ``decoded_size`` per
  entry → ``list<int32>``.

Both hold the encoded bytes as a VectorOfVectors of uint8 (``encoded_data`` with
``flattened_data`` + ``cumulative_length``) and name the codec in the ``codec`` attribute
(``codec_shift`` for radware). A read of entries [a, b) reads only those entries' encoded
bytes, lays them out as the padded byte matrix the decoders take, and decodes into
int32 — the type lh5io's own decompressed read gives. The decoders are numba
gufuncs that run without the GIL, so a large range is cut into blocks decoded on a small
thread pool (``bench/timeseries.py`` measures the gain).
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np
import pyarrow as pa

from arrowroot.flight_server.core import readpool

from .base import ColumnUnreadable, SourceError

AOEESA = "array_of_encoded_equalsized_arrays"
VOEV = "encoded_array"
CODECS = ("radware_sigcompress", "uleb128_zigzag_diff")
# Entries decoded per task; a block's padded byte matrix stays a few MB.
BLOCK_ENTRIES = 2048


def is_encoded(datatype: str) -> bool:
    """Whether an LH5 ``datatype`` names encoded (compressed) waveform data."""
    return datatype.startswith(AOEESA + "<") or "{" + VOEV + "<" in datatype


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Encoded:
    """How one encoded column is decoded."""

    codec: str
    shift: int
    equal_size: int | None      # decoded_size of an AOEESA; None for a VOEV (per entry)

    @property
    def arrow_type(self) -> pa.DataType:
        if self.equal_size is not None:
            return pa.list_(pa.int32(), self.equal_size)
        return pa.list_(pa.int32())


def inspect(group: h5py.HLObject, datatype: str) -> Encoded:
    """Check an encoded LH5 group's layout; raises ColumnUnreadable with the reason."""
    if not isinstance(group, h5py.Group):
        raise ColumnUnreadable(f"{datatype!r} must be a group with encoded_data and decoded_size")
    for key in ("encoded_data", "decoded_size"):
        if key not in group:
            raise ColumnUnreadable(f"{datatype!r} group without {key!r}")
    enc = group["encoded_data"]
    if not isinstance(enc, h5py.Group) or "flattened_data" not in enc or "cumulative_length" not in enc:
        raise ColumnUnreadable(f"{datatype!r}: encoded_data lacks flattened_data/cumulative_length")
    codec = _text(group.attrs.get("codec", ""))
    if codec not in CODECS:
        raise ColumnUnreadable(f"{datatype!r}: unknown codec {codec!r} (known: {', '.join(CODECS)})")
    if enc["flattened_data"].dtype.kind not in "ui" or enc["flattened_data"].dtype.itemsize != 1:
        raise ColumnUnreadable(f"{datatype!r}: encoded bytes stored as {enc['flattened_data'].dtype}, not uint8")
    shift = int(group.attrs.get("codec_shift", 0))
    size = group["decoded_size"]
    if datatype.startswith(AOEESA):
        if size.ndim != 0:
            raise ColumnUnreadable(f"{datatype!r}: decoded_size should be one number")
        return Encoded(codec, shift, int(size[()]))
    if size.ndim != 1 or size.shape[0] != enc["cumulative_length"].shape[0]:
        raise ColumnUnreadable(f"{datatype!r}: decoded_size should have one length per entry")
    return Encoded(codec, shift, None)


def entries(group: h5py.Group) -> int:
    return int(group["encoded_data"]["cumulative_length"].shape[0])


def chunk_rows(group: h5py.Group) -> int | None:
    cl = group["encoded_data"]["cumulative_length"]
    return cl.chunks[0] if cl.chunks else None


def nbytes(group: h5py.Group) -> int:
    """Stored (encoded) bytes of the column."""
    enc = group["encoded_data"]
    return int(enc["flattened_data"].size + enc["cumulative_length"].size * enc["cumulative_length"].dtype.itemsize)


def _decoders():
    try:
        from lh5.compression import radware, varlen
    except ImportError as exc:  # the server runs without lh5io: say what to install
        raise SourceError("decoding compressed LH5 waveforms needs legend-lh5io "
                          "(pip install 'arrowroot[lh5]')") from exc
    return radware, varlen


def _decode_block(spec: Encoded, flat: np.ndarray, lens: np.ndarray, sizes: np.ndarray, out: np.ndarray) -> None:
    """Decode len(lens) consecutive encoded waveforms (bytes ``flat``) into ``out`` rows."""
    radware, varlen = _decoders()
    n = len(lens)
    if n == 0:
        return
    width = max(int(lens.max()), 2)
    # The decoders take a zero-padded byte matrix, one waveform per row. A row-by-row copy
    # beats a boolean-mask scatter by 2x here (np.zeros pages are zero already).
    matrix = np.zeros((n, width), dtype=np.uint8)
    at = 0
    for i, length in enumerate(lens.tolist()):
        matrix[i, :length] = flat[at:at + length]
        at += length
    if spec.codec == "radware_sigcompress":
        # The decoder trusts the length in each waveform's header: check it first, so
        # corrupt bytes raise here instead of writing past the output rows.
        header = (matrix[:, 0].astype(np.int64) << 8) | matrix[:, 1]
        if not np.array_equal(header, sizes):
            bad = int(np.flatnonzero(header != sizes)[0])
            raise SourceError(f"encoded waveform {bad} of the block says {int(header[bad])} samples, "
                              f"its decoded_size says {int(sizes[bad])}: the data are corrupt")
        _, got = radware.decode((matrix, lens.astype(np.uint32)), out, shift=spec.shift)
    else:
        _, got = varlen.decode((matrix, lens.astype(np.uint32)), out)
    if not np.array_equal(got, sizes):
        bad = int(np.flatnonzero(got != sizes)[0])
        raise SourceError(f"encoded waveform {bad} of the block decodes to {int(got[bad])} samples, "
                          f"its decoded_size says {int(sizes[bad])}: the data are corrupt")


def _thread_pool() -> readpool.ReadPool:
    return readpool.shared("lh5-decode")  # small reads first: core/readpool.py


def read(group: h5py.Group, spec: Encoded, start: int, stop: int, threads: int | None = None) -> pa.Array:
    """Entries [start, stop) decoded, as ``spec.arrow_type``; reads only their encoded bytes."""
    enc = group["encoded_data"]
    n = max(0, stop - start)
    if n == 0:
        return pa.array([], type=spec.arrow_type)
    ends = np.asarray(enc["cumulative_length"][start:stop], dtype=np.int64)
    base = int(enc["cumulative_length"][start - 1]) if start > 0 else 0
    flat = np.asarray(enc["flattened_data"][base:int(ends[-1])]).view(np.uint8)
    lens = np.diff(ends, prepend=base)
    if (lens < 0).any() or len(flat) != int(ends[-1]) - base:
        raise SourceError("encoded_data/cumulative_length is not increasing or runs past the data")
    if spec.equal_size is not None:
        sizes = np.full(n, spec.equal_size, dtype=np.int64)
    else:
        sizes = np.asarray(group["decoded_size"][start:stop], dtype=np.int64)
    width = int(sizes.max()) if spec.equal_size is None else spec.equal_size
    # ULEB128 gives at most one sample per byte and its decoder does not check the
    # output length: rows as wide as the longest encoded waveform keep it in bounds.
    room = max(width, int(lens.max()) if spec.codec == "uleb128_zigzag_diff" else 0, 1)
    out = np.empty((n, room), dtype=np.int32)
    cuts = list(range(0, n, BLOCK_ENTRIES)) + [n]
    byte_at = np.concatenate([[0], np.cumsum(lens)])
    blocks = [(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])]

    def run(block: tuple[int, int]) -> None:
        lo, hi = block
        _decode_block(spec, flat[byte_at[lo]:byte_at[hi]], lens[lo:hi], sizes[lo:hi], out[lo:hi])

    workers = _thread_pool().workers if threads is None else max(1, threads)
    if workers > 1 and len(blocks) > 1:
        nbytes = 4 * n * width  # the decoded int32 samples
        for f in [_thread_pool().submit(run, b, nbytes=nbytes) for b in blocks]:
            f.result()
    else:
        for b in blocks:
            run(b)
    if spec.equal_size is not None:
        return pa.FixedSizeListArray.from_arrays(pa.array(out[:, :width].reshape(-1)), width)
    values = out[np.arange(out.shape[1]) < sizes[:, None]]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if offsets[-1] < 2**31:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values)).cast(spec.arrow_type)
