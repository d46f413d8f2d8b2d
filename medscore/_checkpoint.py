"""Checkpoint files of ``medscore.Memory``: state dicts to and from the C++ implementation.

The format (version 2) is written and read by C++ (``csrc/include/medscore/checkpoint.hpp``,
bound in ``bindings/checkpoint.cpp``), the same code the C and C++ Memory use, so a file saved by
any of them loads in the others. Layout (integers little-endian)::

    magic       16 bytes  b"MEDSCORE-MEMORY\\n"
    version      4 bytes  uint32, 2
    header_len   8 bytes  uint64
    data_len     8 bytes  uint64
    header      typed records (name, type, value): state_version, options.<name> (None, bool,
                int, float or str), keys (tagged: int as decimal ASCII, str as UTF-8, bytes),
                last_step, dim, engine, and for each array its dtype, shape, offset and length
    data        the arrays' bytes, back to back
    crc32        4 bytes  CRC-32 (zlib.crc32) of everything before it

Reading refuses a file whose magic, version, lengths, checksum or records do not match, before
anything is built from it. Writing is atomic (temporary file in the target's directory, fsync,
rename, fsync of the directory). Only regular files are read, without blocking.

Files of version 1 (a JSON header and a SHA-256, written by medscore before version 2) are
still read, here in Python; saving always writes version 2.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np

from . import _core
from ._core import CheckpointError

MAGIC = b"MEDSCORE-MEMORY\n"
FILE_VERSION = 2
FORMAT = "medscore.Memory"
_ENGINE_ARRAYS = {"offsets": np.int64, "points": np.float64, "steps": np.int64, "labels": np.int64,
                  "mst_u": np.int64, "mst_v": np.int64, "mst_weight": np.float64}


def _encode_key(key) -> tuple[str, bytes]:
    if isinstance(key, bool):
        raise TypeError("bool keys are not supported")
    if isinstance(key, int):
        return "i", str(key).encode("ascii")
    if isinstance(key, str):
        return "s", key.encode("utf-8")
    if isinstance(key, bytes):
        return "b", key
    raise TypeError(f"cannot save a key of type {type(key).__name__}")


def _decode_key(tag: str, value: bytes, path):
    if tag == "s":
        return value.decode("utf-8")  # checked to be UTF-8 by the reader
    if tag == "b":
        return value
    try:
        return int(value)
    except ValueError as error:  # longer than Python's int/str conversion limit
        raise CheckpointError(f"{path}: key cannot be read as an int: {error}") from None


def _array(name: str, value, dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``, refusing casts that lose values."""
    arr = np.asarray(value)
    if not np.can_cast(arr.dtype, dtype, "safe"):
        raise TypeError(f"{name} must be castable to {np.dtype(dtype)} without loss, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def write_state(path, state: dict) -> None:
    """Write a Memory state dict (``Memory.state_dict()``) to ``path`` atomically, as version 2."""
    if state.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} state (missing or wrong 'format')")
    engine = state["engine"]
    if engine is not None:
        engine = {"dim": int(engine["dim"]), "last_step": int(engine["last_step"]),
                  **{name: _array(f"engine {name}", engine[name], dtype) for name, dtype in _ENGINE_ARRAYS.items()}}
    _core.checkpoint_write(
        os.fsencode(path), int(state["version"]), dict(state["options"]),
        [_encode_key(k) for k in state["keys"]], int(state["last_step"]),
        0 if state["dim"] is None else int(state["dim"]),
        _array("last_penalties", state["last_penalties"], np.float64), engine)


def read_state(path) -> dict:
    """Read a Memory state dict written by :func:`write_state` (or a version-1 file).

    Raises CheckpointError (a ValueError) for a damaged, truncated or foreign file and for
    anything but a regular file; OSError when the file cannot be read.
    """
    where = os.fsencode(path).decode("utf-8", "backslashreplace")  # for messages: any file name
    blob = _core.checkpoint_read_bytes(os.fsencode(path))
    if blob[:16].tobytes() == MAGIC and blob[16:20].tobytes() == struct.pack("<I", 1):
        return _read_v1(blob.tobytes(), where)
    raw = _core.checkpoint_deserialize(blob, where)
    return {"format": FORMAT, "version": raw["state_version"], "options": raw["options"],
            "keys": [_decode_key(tag, value, where) for tag, value in raw["keys"]],
            "last_step": raw["last_step"], "dim": raw["dim"], "last_penalties": raw["last_penalties"],
            "engine": raw["engine"]}


# -- version 1, read only --------------------------------------------------------------------

_V1_PREFIX = struct.Struct("<16sIQ")  # magic, version, header length; a SHA-256 digest ends the file


def _read_v1(blob: bytes, path) -> dict:
    """The state in a version-1 file: a JSON header, the raw arrays, a SHA-256 of all before it."""
    body, digest = blob[:-32], blob[-32:]
    if len(blob) < _V1_PREFIX.size + 32 or hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path}: checksum mismatch: the file is corrupted or truncated")
    start = _V1_PREFIX.size + _V1_PREFIX.unpack_from(blob)[2]
    if start > len(body):
        raise CheckpointError(f"{path}: header runs past the end of the file")
    try:
        header = json.loads(body[_V1_PREFIX.size:start].decode("utf-8"))
        arrays = {}
        for entry in header.pop("arrays"):
            dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            if start + entry["offset"] + entry["nbytes"] > len(body) or entry["nbytes"] != dtype.itemsize * count:
                raise CheckpointError(f"{path}: array {entry['name']} does not fit the data block")
            arrays[entry["name"]] = np.frombuffer(body, dtype, count, start + entry["offset"]).reshape(shape).copy()
        decode = {"i": int, "s": str, "b": bytes.fromhex}
        state = dict(header, keys=[decode[tag](value) for tag, value in header["keys"]],
                     last_penalties=arrays.pop("last_penalties"))
        if header["engine"] is not None:
            state["engine"] = {**header["engine"], **{k.removeprefix("engine."): a for k, a in arrays.items()}}
        return state
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as error:
        # A checksummed file whose header is not a state (written by another program).
        raise CheckpointError(f"{path}: malformed header ({type(error).__name__}: {error})") from None


__all__ = ["CheckpointError", "read_state", "write_state", "FILE_VERSION", "MAGIC"]
