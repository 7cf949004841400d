"""HDF5 filter pipelines decoded without HDF5 (and without the GIL), one chunk at a time.

h5py decodes under one global lock, so N readers of a Bitshuffle-LZ4 stack (as Dectris/Eiger
detectors write) share one core. The direct reader (``hdf5_direct.py``) reads a chunk's stored
bytes itself and decodes them here, in a thread pool, with the very decoders HDF5 would run:
the C libraries ``hdf5plugin`` ships (bitshuffle, c-blosc, zstd, lz4), called through ``ctypes``,
which releases the GIL for the length of each call, and zlib for deflate. The byte layouts are
each filter's own (bitshuffle's 12-byte header of total size and block size; the LZ4 filter's
blocks with their sizes; Blosc's self-describing buffer; a Zstandard frame).

A pipeline is decodable only if every filter in it is one of these, with parameters understood
here, and the needed library loads; anything else (fletcher32, szip, nbit, scaleoffset, LZF, zfp,
Blosc2, a library missing its symbol) is left to h5py. ``Pipeline.of`` returns None then.
"""

from __future__ import annotations

import ctypes
import os
import struct
import zlib
from collections.abc import Sequence
from functools import cache

import numpy as np
import pyarrow as pa

DEFLATE, SHUFFLE, BLOSC, LZ4, BITSHUFFLE, ZSTD = 1, 2, 32001, 32004, 32008, 32015
_BSHUF_NONE, _BSHUF_LZ4, _BSHUF_ZSTD = 0, 2, 3


class DecodeError(Exception):
    """The stored bytes do not decode as the pipeline says (h5py then reads, and reports)."""


class CorruptChunk(DecodeError):
    """The chunk's own framing is inconsistent (block sizes running past its end): its bytes are
    damaged, and no decoder — HDF5's included, which does not check — may be given them."""


def _check_blocks(data, start: int, elems: int, elem: int, block: int) -> None:
    """Walk bitshuffle's blocks (a 4-byte big-endian stored size before each) and check they end
    exactly where the chunk does; bitshuffle's decoder trusts these sizes."""
    if block <= 0 or block % 8:
        raise CorruptChunk(f"bitshuffle: block size {block} elements")
    full, rest = divmod(elems, block)
    count = full + (1 if rest - rest % 8 else 0)
    view, pos, end = memoryview(data), start, len(data)
    for _ in range(count):
        if pos + 4 > end:
            raise CorruptChunk("bitshuffle: the chunk ends inside a block header")
        pos += 4 + int.from_bytes(view[pos:pos + 4], "big")
    if pos + (rest % 8) * elem != end:
        raise CorruptChunk("bitshuffle: the blocks do not add up to the chunk's stored size")


@cache
def _library(name: str) -> ctypes.CDLL | None:
    """One of hdf5plugin's filter libraries, or None when it is not there."""
    try:
        import hdf5plugin
    except ImportError:
        return None
    path = os.path.join(hdf5plugin.PLUGIN_PATH, f"libh5{name}.so")
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


def _function(lib: str, name: str, restype: type, argtypes: Sequence[type]):
    found = _library(lib)
    fn = getattr(found, name, None) if found is not None else None
    if fn is None:
        return None
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


_P, _S = ctypes.c_void_p, ctypes.c_size_t


@cache
def _bshuf(kind: int):
    name = {_BSHUF_NONE: "bshuf_bitunshuffle", _BSHUF_LZ4: "bshuf_decompress_lz4",
            _BSHUF_ZSTD: "bshuf_decompress_zstd"}.get(kind)
    return _function("bshuf", name, ctypes.c_int64, [_P, _P, _S, _S, _S]) if name else None


@cache
def _blosc():
    return (_function("blosc", "blosc_decompress_ctx", ctypes.c_int, [_P, _P, _S, ctypes.c_int]),
            _function("blosc", "blosc_cbuffer_sizes", None, [_P, ctypes.POINTER(_S), ctypes.POINTER(_S),
                                                            ctypes.POINTER(_S)]))


@cache
def _zstd():
    return (_function("zstd", "ZSTD_decompress", _S, [_P, _S, _P, _S]),
            _function("zstd", "ZSTD_isError", ctypes.c_uint, [_S]))


@cache
def _lz4():
    return _function("lz4", "LZ4_decompress_safe", ctypes.c_int, [_P, _P, ctypes.c_int, ctypes.c_int])


def _address(buf) -> int:
    """Address of the first byte of a buffer (bytes, bytearray, memoryview, numpy, Arrow);
    the caller keeps ``buf`` alive while the address is used."""
    return buf.address if isinstance(buf, pa.Buffer) else pa.py_buffer(buf).address


class Step:
    """One filter, reversed: stored bytes → the bytes the filter was given."""

    def decode(self, data: bytes, size: int, out: memoryview | None) -> bytes | memoryview:
        raise NotImplementedError


class _Deflate(Step):
    def decode(self, data, size, out):
        try:
            return zlib.decompress(data, bufsize=size)
        except zlib.error as exc:
            raise DecodeError(f"deflate: {exc}") from None


class _Shuffle(Step):
    def __init__(self, itemsize: int):
        self.itemsize = itemsize

    def decode(self, data, size, out):
        if self.itemsize <= 1 or len(data) != size:
            return data
        n = size // self.itemsize
        planes = np.frombuffer(data, np.uint8, count=n * self.itemsize).reshape(self.itemsize, n)
        target = np.frombuffer(out, np.uint8) if out is not None else np.empty(size, np.uint8)
        target[: n * self.itemsize].reshape(n, self.itemsize)[...] = planes.T
        if n * self.itemsize < size:  # HDF5 leaves a tail of less than one element as it is
            target[n * self.itemsize:] = np.frombuffer(data, np.uint8)[n * self.itemsize:]
        return out if out is not None else target.data


class _Bitshuffle(Step):
    def __init__(self, values: Sequence[int], itemsize: int):
        self.elem = int(values[2]) if len(values) > 2 and values[2] else itemsize
        self.block = int(values[3]) if len(values) > 3 else 0
        self.kind = int(values[4]) if len(values) > 4 else _BSHUF_NONE
        self.fn = _bshuf(self.kind)

    def decode(self, data, size, out):
        skip, block = 0, self.block
        if self.kind != _BSHUF_NONE:
            if len(data) < 12:
                raise DecodeError("bitshuffle: chunk shorter than its header")
            total, block_bytes = struct.unpack(">QI", data[:12])
            if total != size:
                raise DecodeError(f"bitshuffle: header says {total} bytes, the chunk holds {size}")
            block, skip = block_bytes // self.elem, 12
            if size % self.elem == 0:
                _check_blocks(data, 12, size // self.elem, self.elem, block)
        elif len(data) != size:
            raise DecodeError("bitshuffle: stored size differs from the chunk's")
        if size % self.elem:
            raise DecodeError("bitshuffle: not a whole number of elements")
        target = out if out is not None else bytearray(size)
        ret = self.fn(_address(data) + skip, _address(target), size // self.elem, self.elem, block)
        if ret < 0:
            raise DecodeError(f"bitshuffle: error {ret}")
        return target


class _Blosc(Step):
    def __init__(self):
        self.decompress, self.sizes = _blosc()

    def decode(self, data, size, out):
        if len(data) < 16:
            raise DecodeError("blosc: chunk shorter than its header")
        nbytes, cbytes, block = _S(), _S(), _S()
        self.sizes(_address(data), ctypes.byref(nbytes), ctypes.byref(cbytes), ctypes.byref(block))
        if cbytes.value > len(data):
            raise CorruptChunk(f"blosc: header says {cbytes.value} stored bytes, the chunk has {len(data)}")
        if nbytes.value != size:
            raise DecodeError(f"blosc: header says {nbytes.value} bytes, the chunk holds {size}")
        target = out if out is not None else bytearray(size)
        if self.decompress(_address(data), _address(target), size, 1) != size:
            raise DecodeError("blosc: decompression failed")
        return target


class _Zstd(Step):
    def __init__(self):
        self.decompress, self.is_error = _zstd()

    def decode(self, data, size, out):
        target = out if out is not None else bytearray(size)
        got = self.decompress(_address(target), size, _address(data), len(data))
        if self.is_error(got) or got != size:
            raise DecodeError("zstd: decompression failed")
        return target


class _Lz4(Step):
    """The LZ4 filter's layout: total size (8 bytes, big-endian), block size (4), then per block
    its stored size (4) and the LZ4 block, or the block itself when storing it was no smaller."""

    def __init__(self):
        self.decompress = _lz4()

    def decode(self, data, size, out):
        if len(data) < 12:
            raise DecodeError("lz4: chunk shorter than its header")
        total, block = struct.unpack(">QI", data[:12])
        if total != size or block <= 0:
            raise DecodeError(f"lz4: header says {total} bytes, the chunk holds {size}")
        target = out if out is not None else bytearray(size)
        base, src, view, pos, done = _address(target), _address(data), memoryview(data), 12, 0
        while done < size:
            n = min(block, size - done)
            if pos + 4 > len(data):
                raise CorruptChunk("lz4: the chunk ends inside a block header")
            (stored,) = struct.unpack(">I", data[pos:pos + 4])
            pos += 4
            if pos + stored > len(data):
                raise CorruptChunk("lz4: the chunk ends inside a block")
            if stored == n:
                np.frombuffer(target, np.uint8)[done:done + n] = np.frombuffer(view[pos:pos + n], np.uint8)
            elif self.decompress(src + pos, base + done, stored, n) != n:
                raise DecodeError("lz4: decompression failed")
            pos += stored
            done += n
        return target


class Pipeline:
    """A dataset's filters, reversed, for decoding one stored chunk into ``size`` bytes."""

    def __init__(self, steps: list[Step]):
        self.steps = steps       # in decoding order (the last filter applied first)

    @property
    def empty(self) -> bool:
        return not self.steps

    @classmethod
    def of(cls, filters: Sequence[tuple[int, Sequence[int]]], itemsize: int) -> Pipeline | None:
        """From (filter id, client values) in the order HDF5 applied them; None when any step
        is not decodable here (h5py reads the dataset instead)."""
        steps: list[Step] = []
        for code, values in filters:
            if code == DEFLATE:
                steps.append(_Deflate())
            elif code == SHUFFLE:
                steps.append(_Shuffle(itemsize))
            elif code == BITSHUFFLE:
                step = _Bitshuffle(values, itemsize)
                if step.fn is None or step.elem != itemsize:
                    return None
                steps.append(step)
            elif code == BLOSC and all(_blosc()):
                steps.append(_Blosc())
            elif code == ZSTD and all(_zstd()):
                steps.append(_Zstd())
            elif code == LZ4 and _lz4() is not None:
                steps.append(_Lz4())
            else:
                return None
        return cls(steps[::-1])

    def decode(self, data: bytes, size: int, out: memoryview | None = None) -> bytes | memoryview:
        """The chunk's ``size`` decoded bytes; written into ``out`` (``size`` bytes) when given
        and the last step can (no copy), else returned."""
        for i, step in enumerate(self.steps):
            last = i == len(self.steps) - 1
            data = step.decode(data, size, out if last else None)
            if not last and not isinstance(data, bytes):
                data = bytes(data)
        if len(data) != size:
            raise DecodeError(f"decoded {len(data)} bytes, expected {size}")
        if out is not None and data is not out:
            out[:] = data   # a step that cannot write in place (zlib)
            return out
        return data
