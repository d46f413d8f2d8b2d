"""Checkpoint files of ``medscore.Memory``: versioned, checksummed, written atomically.

Layout (all integers little-endian)::

    magic      16 bytes  b"MEDSCORE-MEMORY\\n"
    version     4 bytes  uint32 (FILE_VERSION)
    header_len  8 bytes  uint64
    header      header_len bytes of UTF-8 JSON: the state without its arrays, plus for each
                array its name, dtype, shape, offset and length in the data block
    data        the arrays' bytes, back to back
    digest     32 bytes  SHA-256 of everything before it

``read_state`` refuses a file whose magic, version, sizes or digest do not match, before
building anything from it: a corrupted or truncated file is never half-loaded. ``write_state``
writes a temporary file in the target's directory, fsyncs it, renames it over the target
and fsyncs the directory, so a crash leaves either the old file or the new one.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import tempfile
from pathlib import Path

import numpy as np

MAGIC = b"MEDSCORE-MEMORY\n"
FILE_VERSION = 1
_PREFIX = struct.Struct("<16sIQ")
_DIGEST_LEN = 32


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back exactly (corrupted, truncated, foreign)."""


def _encode_key(key):
    if isinstance(key, bool):
        raise TypeError("bool keys are not supported")
    if isinstance(key, int):
        return ["i", str(key)]
    if isinstance(key, str):
        return ["s", key]
    if isinstance(key, bytes):
        return ["b", key.hex()]
    raise TypeError(f"cannot save a key of type {type(key).__name__}")


def _decode_key(item):
    tag, value = item
    if tag == "i":
        return int(value)
    if tag == "s":
        return str(value)
    if tag == "b":
        return bytes.fromhex(value)
    raise CheckpointError(f"unknown key tag {tag!r}")


def _split(state: dict):
    """(JSON-able header dict, {name: array}) of a Memory state dict."""
    arrays = {"last_penalties": np.ascontiguousarray(state["last_penalties"])}
    engine = None
    if state["engine"] is not None:
        engine = {}
        for name, value in state["engine"].items():
            if isinstance(value, np.ndarray):
                arrays["engine." + name] = np.ascontiguousarray(value)
            else:
                engine[name] = int(value)
    header = {k: v for k, v in state.items() if k not in ("engine", "last_penalties", "keys")}
    header["keys"] = [_encode_key(k) for k in state["keys"]]
    header["engine"] = engine
    return header, arrays


def _serialize(state: dict) -> bytes:
    header, arrays = _split(state)
    table, offset = [], 0
    for name, arr in arrays.items():
        if arr.dtype.hasobject:
            raise TypeError(f"array {name} has object dtype")
        table.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape),
                      "offset": offset, "nbytes": arr.nbytes})
        offset += arr.nbytes
    header["arrays"] = table
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    body = b"".join([_PREFIX.pack(MAGIC, FILE_VERSION, len(header_bytes)), header_bytes,
                     *(arr.tobytes() for arr in arrays.values())])
    return body + hashlib.sha256(body).digest()


def _deserialize(blob: bytes, path) -> dict:
    if len(blob) < _PREFIX.size + _DIGEST_LEN:
        raise CheckpointError(f"{path}: too short to be a medscore checkpoint ({len(blob)} bytes)")
    magic, version, header_len = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise CheckpointError(f"{path}: not a medscore Memory checkpoint (bad magic)")
    if version != FILE_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version} is not supported (expected {FILE_VERSION})")
    body, digest = blob[:-_DIGEST_LEN], blob[-_DIGEST_LEN:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path}: checksum mismatch: the file is corrupted or truncated")
    start = _PREFIX.size + header_len
    if start > len(body):
        raise CheckpointError(f"{path}: header runs past the end of the file")
    try:
        return _interpret(body, start, path)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as error:
        # A checksummed file whose header is not a state (written by another program).
        raise CheckpointError(f"{path}: malformed header ({type(error).__name__}: {error})") from None


def _interpret(body: bytes, start: int, path) -> dict:
    header = json.loads(body[_PREFIX.size:start].decode("utf-8"))
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is not a JSON object")
    data = body[start:]
    arrays = {}
    for entry in header.pop("arrays"):
        dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
        end = entry["offset"] + entry["nbytes"]
        if end > len(data) or entry["nbytes"] != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise CheckpointError(f"{path}: array {entry['name']} does not fit the data block")
        arrays[entry["name"]] = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)),
                                              offset=entry["offset"]).reshape(shape).copy()
    return _join(header, arrays)


def _join(header: dict, arrays: dict) -> dict:
    state = dict(header)
    state["keys"] = [_decode_key(item) for item in header["keys"]]
    state["last_penalties"] = arrays.pop("last_penalties")
    if header["engine"] is not None:
        engine = dict(header["engine"])
        for name, arr in arrays.items():
            engine[name.removeprefix("engine.")] = arr
        state["engine"] = engine
    return state


def write_state(path, state: dict) -> None:
    """Write a Memory state dict to ``path`` atomically (temp file, fsync, rename, fsync dir)."""
    path = Path(path)
    blob = _serialize(state)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_state(path) -> dict:
    """Read a Memory state dict written by :func:`write_state`; raises CheckpointError.

    Only a regular file is read, and no further than the size ``fstat`` reports: it is
    opened without blocking (a FIFO would otherwise wait for a writer forever, a device
    might never end), then checked.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path}: not a regular file (a checkpoint is read only from one)")
        blob = bytearray(info.st_size)
        view, done = memoryview(blob), 0
        while done < len(blob):
            n = os.readv(fd, [view[done:]])
            if n == 0:
                raise CheckpointError(f"{path}: the file shrank while it was read")
            done += n
    finally:
        os.close(fd)
    return _deserialize(blob, path)


__all__ = ["CheckpointError", "read_state", "write_state", "FILE_VERSION", "MAGIC"]
