"""Read the tensors of dlib's serialised face-recognition network (``dlib_face_recognition_resnet_model_v1.dat``).

No dlib needed. dlib writes integers in a compact form (one control byte: low 4 bits = number of value bytes,
bit 7 = negative; then the magnitude little-endian), strings as an integer length + bytes, and a tensor as the
integer version (2), the four integer dimensions (num_samples, k, nr, nc) and then n·k·nr·nc little-endian
float32. Each ``con_`` and ``affine_`` layer writes its name string followed by its parameter tensor; ``fc_`` writes
its name, two integers (num_outputs, num_inputs), then its tensor; input-side layers come first.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["DlibFormatError", "read_dlib_tensors"]

_NAME = re.compile(rb"[\x01]([\x04-\x07])(con_\d|affine_|fc_\d)")


class DlibFormatError(ValueError):
    """The file is not a dlib network serialisation this reader understands."""


def _read_int(buf: bytes, pos: int, path: Path) -> tuple[int, int]:
    if pos >= len(buf):
        raise DlibFormatError(f"path: {path} ends inside an integer at byte {pos}")
    ctrl = buf[pos]
    n = ctrl & 0x0F
    if n > 8 or pos + 1 + n > len(buf):
        raise DlibFormatError(f"path: {path} has a malformed integer at byte {pos}")
    val = int.from_bytes(buf[pos + 1:pos + 1 + n], "little")
    return (-val if ctrl & 0x80 else val), pos + 1 + n


def read_dlib_tensors(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """All ``(kind, flat float32 array)`` parameter tensors of a dlib network file, input → output.

    Args:
        path: the ``.dat`` file.

    Returns:
        ``[(kind, values), ...]`` with kind 'con', 'affine' or 'fc' and values a flat ``float32`` array (the
        tensor's num_samples·k·nr·nc values as stored).

    Raises:
        FileNotFoundError: no such file. DlibFormatError: a tensor header is malformed or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file {path}")
    buf = path.read_bytes()
    out: list[tuple[str, np.ndarray]] = []
    pos = 0
    while True:
        m = _NAME.search(buf, pos)
        if m is None:
            break
        name = m.group(2).decode()
        if len(name) != buf[m.start() + 1]:
            pos = m.start() + 1
            continue
        p = m.end()
        if name.startswith("fc_"):  # fc_ writes num_outputs and num_inputs before its tensor
            _, p = _read_int(buf, p, path)
            _, p = _read_int(buf, p, path)
        version, p = _read_int(buf, p, path)
        if version != 2:
            raise DlibFormatError(f"path: {path}: tensor of {name} at byte {p} has version {version}, expected 2")
        dims = []
        for _ in range(4):
            d, p = _read_int(buf, p, path)
            if d < 0:
                raise DlibFormatError(f"path: {path}: negative tensor dimension in {name} at byte {p}")
            dims.append(d)
        count = int(np.prod(dims))
        if p + 4 * count > len(buf):
            raise DlibFormatError(f"path: {path} is truncated inside the tensor of {name}")
        values = np.frombuffer(buf, dtype="<f4", count=count, offset=p).astype(np.float32)
        out.append((name.rstrip("_0123456789"), values))
        pos = p + 4 * count
    if not out:
        raise DlibFormatError(f"path: {path} holds no dlib con_/affine_/fc_ tensors")
    return out
