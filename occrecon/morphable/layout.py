"""The parameter vector θ as a named, model-dependent layout of slices."""
from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["ParamLayout", "DEEP3D_ORDER"]

#: Deep3D's group order (``id, exp, tex, angle, gamma, trans``), used by every layout built here.
DEEP3D_ORDER = ("id", "exp", "tex", "angle", "gamma", "trans")


class ParamLayout:
    """An ordered list of named slices of θ, e.g. ``id[0:80] exp[80:144] ... trans[254:257]``.

    Args:
        entries: ``(name, size)`` pairs in order; names unique identifiers, sizes ≥ 0.

    ``ParamLayout.deep3d()`` is the BFM/Deep3D default (id 80, exp 64, tex 80, angle 3, gamma 27, trans 3 =
    257); ``ParamLayout.for_model(n_id, n_exp, n_tex)`` follows a loaded model (``MorphableModel.layout``).
    Angles are 3 Euler angles (radians), gamma 9 SH coefficients per RGB channel, trans a translation in the
    model's units.
    """

    def __init__(self, entries: Iterable[tuple[str, int]]):
        self._entries: tuple[tuple[str, int], ...] = tuple((str(n), int(s)) for n, s in entries)
        names = [n for n, _ in self._entries]
        if len(set(names)) != len(names):
            raise ValueError(f"entries: duplicate names in {names}")
        for n, s in self._entries:
            if not n.isidentifier():
                raise ValueError(f"entries: name {n!r} is not an identifier")
            if s < 0:
                raise ValueError(f"entries: size of {n!r} is {s}, must be >= 0")
        self._slices: dict[str, slice] = {}
        start = 0
        for n, s in self._entries:
            self._slices[n] = slice(start, start + s)
            start += s
        self._size = start

    @classmethod
    def for_model(cls, n_id: int, n_exp: int, n_tex: int) -> ParamLayout:
        """Deep3D's order with the model's coefficient counts: id, exp, tex, angle 3, gamma 27, trans 3."""
        return cls([("id", n_id), ("exp", n_exp), ("tex", n_tex), ("angle", 3), ("gamma", 27), ("trans", 3)])

    @classmethod
    def deep3d(cls) -> ParamLayout:
        """The BFM/Deep3D default: id 80, exp 64, tex 80, angle 3, gamma 27, trans 3 (257 in all)."""
        return cls.for_model(80, 64, 80)

    @property
    def size(self) -> int:
        """Length of θ."""
        return self._size

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self._entries)

    @property
    def entries(self) -> tuple[tuple[str, int], ...]:
        return self._entries

    def slice(self, name: str) -> slice:
        """The slice of θ that holds group ``name`` (KeyError naming the known groups otherwise)."""
        try:
            return self._slices[name]
        except KeyError:
            raise KeyError(f"name: no group {name!r} in {self!r}") from None

    def _check(self, theta: torch.Tensor, arg: str = "theta") -> None:
        if not isinstance(theta, torch.Tensor):
            raise TypeError(f"{arg}: expected a torch.Tensor, got {type(theta).__name__}")
        if theta.dim() < 1 or theta.shape[-1] != self._size:
            raise ValueError(f"{arg}: expected shape (B, {self._size}) for {self!r}, got {tuple(theta.shape)}")

    def split(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """θ ``(B, size)`` (or ``(..., size)``) → ``{name: (B, n)}`` views, in layout order."""
        self._check(theta)
        return {n: theta[..., self._slices[n]] for n, _ in self._entries}

    def join(self, **parts: torch.Tensor) -> torch.Tensor:
        """The inverse of ``split``: every group by name, each ``(B, n)`` → θ ``(B, size)``."""
        missing = [n for n in self.names if n not in parts]
        extra = [n for n in parts if n not in self._slices]
        if missing or extra:
            raise ValueError(f"parts: missing {missing}, unknown {extra} for {self!r}")
        out = []
        for n, s in self._entries:
            p = parts[n]
            if not isinstance(p, torch.Tensor) or p.dim() < 1 or p.shape[-1] != s:
                shape = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
                raise ValueError(f"{n}: expected last dimension {s}, got {shape}")
            out.append(p)
        return torch.cat(out, dim=-1)

    def zeros(self, batch: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """θ = 0 ``(batch, size)``: mean face, mean albedo, zero angles/light/translation."""
        return torch.zeros(batch, self._size, dtype=dtype, device=device)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParamLayout) and other._entries == self._entries

    def __hash__(self) -> int:
        return hash(self._entries)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={s} [{self._slices[n].start}:{self._slices[n].stop}]" for n, s in self._entries)
        return f"ParamLayout({parts}; size={self._size})"
