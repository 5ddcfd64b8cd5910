"""Reader for the IDX files MNIST is distributed in (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS").

An IDX file is a 4-byte magic number -- two zero bytes, a type code, the number of dimensions d -- then d big-endian
uint32 sizes, then the data in row-major (C) order, big-endian.  MNIST labels have magic 0x00000801 (unsigned bytes,
1 dimension), MNIST images 0x00000803 (unsigned bytes, 3 dimensions: count, rows, columns).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> element type (big-endian, as stored in the file).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),  # unsigned byte
    0x09: np.dtype(">i1"),  # signed byte
    0x0B: np.dtype(">i2"),  # short
    0x0C: np.dtype(">i4"),  # int
    0x0D: np.dtype(">f4"),  # float
    0x0E: np.dtype(">f8"),  # double
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's contents, decompressed when it is gzip (recognised by its first two bytes, not its name)."""
    if not path.exists():
        raise FileNotFoundError(f"IDX file not found: {path}")
    if not path.is_file():
        raise ValueError(f"IDX path is not a regular file: {path}")
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path} is a corrupt or truncated gzip file ({err})") from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian numpy array of the shape its header gives.

    Raises FileNotFoundError if the file is missing and ValueError, naming the file, if the magic number, the type
    code or the sizes do not match the file's length.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path} is too short ({len(data)} bytes) to hold the 4-byte IDX magic number")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path} has magic number 0x{magic:08X}, which is not IDX: the first two bytes must be zero "
            "(MNIST images are 0x00000803, labels 0x00000801)"
        )
    if type_code not in IDX_DTYPES:
        allowed = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise ValueError(f"{path} has IDX type code 0x{type_code:02X} (magic 0x{magic:08X}); allowed: {allowed}")
    if ndim == 0:
        raise ValueError(f"{path} has magic number 0x{magic:08X}, declaring 0 dimensions; an IDX array needs >= 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{path} is truncated: its magic number declares {ndim} dimensions, needing a {header_size}-byte header, "
            f"but the file has {len(data)} bytes"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header_size
    if found != expected:
        problem = "is truncated" if found < expected else "has trailing bytes"
        raise ValueError(
            f"{path} {problem}: its header declares shape {shape} of {dtype.name} = {expected} data bytes, "
            f"but {found} bytes follow the header"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable, native-endian copy
