"""Random inputs for the fuzz cases: sizes, dtypes, memory layouts, special values, meshes, rasterizations, and the
call wrapper that turns a case's expectation (a result, a refusal, either) into findings."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from .driver import ALLOWED_EXCEPTIONS, Finding

FLOATS = (torch.float32, torch.float64)
#: dtypes a mutated tensor is converted to (every one is refused by the float kernels, or by the int32 index checks)
OTHER_DTYPES = (torch.float16, torch.bfloat16, torch.float64, torch.float32, torch.int32, torch.int64, torch.int16,
                torch.uint8, torch.bool, torch.complex64)
FLOAT_SPECIALS = (math.nan, math.inf, -math.inf, 3.0e38, -3.0e38, 1e30, 1e-40, -1e-42, 5e-324, -0.0, 1e300, -1e300)
INDEX_SPECIALS = (-1, -2, -(2 ** 31), 2 ** 31 - 1, 10 ** 7, 2 ** 24 + 1)
#: values of rast's id channel (id + 1) that name no triangle of a small mesh
ID_SPECIALS = (math.nan, math.inf, -math.inf, -1.0, -3.0, 0.5, 1e-40, -0.0, 16777217.0, 2.0 ** 24 + 4, 1e30, 3.0e38)
#: bytes at or above which a tensor can never be allocated here: huge inputs are at least this large
HUGE_BYTES = 1 << 44


def allocation_error(e: BaseException) -> bool:
    """True for the allocator's refusal of a huge request (a valid but unaffordable input)."""
    text = str(e)
    return isinstance(e, torch.OutOfMemoryError) or "allocate" in text or "out of memory" in text.lower()


def describe(x: object) -> str:
    """Short text of a call argument for the case log (a tensor by dtype, shape, strides and a value summary)."""
    if isinstance(x, torch.Tensor):
        dt = str(x.dtype).replace("torch.", "")
        lay = "" if x.is_contiguous() else f" stride={tuple(x.stride())}"
        if x.storage_offset():
            lay += f" offset={x.storage_offset()}"
        vals = ""
        if 0 < x.numel() <= 1 << 16 and x.dtype != torch.bool and not x.is_complex():
            f = x.detach().double()
            fin = f[torch.isfinite(f)]
            span = f"[{fin.min().item():.3g}, {fin.max().item():.3g}]" if fin.numel() else "[]"
            bad = x.numel() - fin.numel()
            vals = f" {span}" + (f" +{bad} non-finite" if bad else "")
        return f"{dt}{list(x.shape)}{lay}{vals}"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(describe(v) for v in x)
        return f"[{inner}]" if isinstance(x, list) else f"({inner})"
    return repr(x)


def clones(args: Sequence[object]) -> list[object]:
    """Copies of the tensor arguments, to check that a call leaves them unchanged (huge expanded ones are kept)."""
    return [a.detach().clone() if isinstance(a, torch.Tensor) and not big(a) else
            clones(a) if isinstance(a, list) else a for a in args]


def equal(a: object, b: object) -> bool:
    """Bitwise equality of results (NaN equals NaN), through tuples and lists."""
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and bool(
            torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                  and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))))
    return a == b


def check(cond: bool, message: str) -> None:
    if not cond:
        raise Finding("invariant", message)


def check_shape(t: object, shape: Sequence[int], what: str, dtype: torch.dtype | None = None) -> None:
    check(isinstance(t, torch.Tensor), f"{what} is {type(t).__name__}, not a tensor")
    check(tuple(t.shape) == tuple(shape), f"{what} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if dtype is not None:
        check(t.dtype == dtype, f"{what} is {t.dtype}, expected {dtype}")


def check_finite(t: torch.Tensor, what: str) -> None:
    if t.is_floating_point() and t.numel():
        bad = int((~torch.isfinite(t)).sum())
        check(bad == 0, f"{what} has {bad} non-finite values for finite inputs")


def all_finite(*ts: object) -> bool:
    return all(not isinstance(t, torch.Tensor) or not t.is_floating_point() or bool(torch.isfinite(t).all())
               for t in ts)


def big(x: object) -> bool:
    """A tensor too large to copy or scan here (a huge expanded input)."""
    return isinstance(x, torch.Tensor) and x.numel() * x.element_size() >= 1 << 28


def same_as_contiguous(g: Gen, label: str, fn, args: list, kwargs: dict, out) -> None:
    """A layout mutation must not change the result: compare with the call on contiguous copies."""
    if not g.layout_changed or any(big(a) for a in list(args) + list(kwargs.values())):
        return
    flat = [a.contiguous() if isinstance(a, torch.Tensor) else
            [t.contiguous() if isinstance(t, torch.Tensor) else t for t in a] if isinstance(a, list) else a
            for a in args]
    kw = {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    ref = g.call(f"{label} (contiguous copies)", fn, *flat, **kw)
    check(equal(out, ref), f"{label}: result on non-contiguous inputs differs from the contiguous one")


def unchanged(before: list, after: list, label: str) -> None:
    for i, (a, b) in enumerate(zip(before, after)):
        if isinstance(a, list) and isinstance(b, list):
            unchanged(a, b, f"{label} (list #{i})")
        elif isinstance(a, torch.Tensor) and a is not b:  # (huge inputs are not copied)
            check(equal(a, b.detach()), f"{label} modified its input #{i}")


class Gen:
    """The random source of one case and its log; ``expect`` is what the next :meth:`call` must end in."""

    def __init__(self, rng: np.random.Generator, index: int, log: Callable[[str], None]):
        self.rng, self.index, self._log = rng, index, log
        self.expect = "ok"  # ok: a result (and invariants); raise: an exception; either
        self.reasons: list[str] = []  # why the input is invalid (or doubtful), for the log and findings
        self.layout_changed = False  # a mutation changed memory layouts: results must equal contiguous ones
        self.raised: BaseException | None = None  # the allowed exception a call ended in (others: generator bugs)
        self.large = bool(rng.random() < 0.12)  # sizes up to 4x larger: the kernels' multi-threaded paths

    # ------------------------------------------------------------------------------------------ bookkeeping
    def note(self, message: str) -> None:
        self._log(message)

    def invalid(self, reason: str) -> None:
        """The input is now invalid: the next call must raise."""
        self.expect = "raise"
        self.reasons.append(reason)

    def doubtful(self, reason: str) -> None:
        """The input is at an edge of the contract: a result or a refusal are both fine."""
        if self.expect == "ok":
            self.expect = "either"
        self.reasons.append(reason)

    def tri_verdict(self, tri: object, vertices: int | None, faces: bool = False, any_int: bool = False) -> None:
        """After the mutations: invalid unless ``tri`` is ``(F, 3)`` int32 (any integer dtype with ``any_int``),
        with ``F >= 1`` if ``faces``, and indices in ``[0, vertices)`` (only >= 0 when ``vertices`` is None)."""
        if not isinstance(tri, torch.Tensor):
            return self.invalid("tri is no tensor")
        if any_int:
            if tri.dtype.is_floating_point or tri.dtype.is_complex or tri.dtype == torch.bool:
                return self.invalid(f"tri is {tri.dtype}")
        elif tri.dtype != torch.int32:
            return self.invalid(f"tri is {tri.dtype}")
        if tri.dim() != 2 or tri.shape[1] != 3:
            return self.invalid(f"tri has shape {tuple(tri.shape)}")
        if faces and tri.shape[0] == 0:
            return self.invalid("no triangles")
        if tri.numel() and not big(tri):
            lo, hi = int(tri.min()), int(tri.max())
            if lo < 0 or (vertices is not None and hi >= vertices):
                self.invalid(f"tri indices [{lo}, {hi}] outside [0, {vertices})")

    def call(self, label: str, fn: Callable, *args, **kwargs):
        """Call ``fn``; a refusal of valid input, an accepted invalid input or a foreign exception is a finding.
        Allowed exceptions propagate (the case ends in them)."""
        shown = ", ".join([describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()])
        why = f"  # expect {self.expect}" + (f": {'; '.join(self.reasons)}" if self.reasons else "")
        self.note(f"{label}({shown}){why}")
        try:
            out = fn(*args, **kwargs)
        except ALLOWED_EXCEPTIONS as e:
            if self.expect == "ok" and not allocation_error(e):
                raise Finding("refused-valid", f"{label} raised {type(e).__name__}: {str(e)[:400]}") from e
            self.raised = e
            raise
        except Finding:
            raise
        except Exception as e:  # noqa: BLE001
            raise Finding("bad-exception", f"{label} raised {type(e).__name__}: {str(e)[:400]}") from e
        if self.expect == "raise":
            raise Finding("accepted-invalid", f"{label} returned for invalid input ({'; '.join(self.reasons)})")
        return out

    # ---------------------------------------------------------------------------------------- random basics
    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick(self, seq: Sequence):
        return seq[int(self.rng.integers(len(seq)))]

    def int(self, lo: int, hi: int) -> int:
        """Uniform in [lo, hi]."""
        return int(self.rng.integers(lo, hi + 1))

    def size(self, lo: int, hi: int) -> int:
        """An image or mesh size in [lo, hi], or up to 4 * hi in a large case."""
        return self.int(lo, 4 * hi if self.large else hi)

    def subset(self, names: Sequence[str], p: float = 0.5, most: int = 2) -> list[str]:
        """With probability ``p`` one to ``most`` distinct names, else none. In the order layout, values, the rest,
        huge: an expanded layout changes values, value mutations need the valid structure, and nothing may copy a
        huge tensor."""
        if not names or not self.chance(p):
            return []
        k = self.int(1, min(most, len(names)))
        order = {"layout": 0, "huge": 3}
        return sorted((names[i] for i in self.rng.choice(len(names), k, replace=False)),
                      key=lambda n: order.get(n, 1 if n.endswith("values") or n == "ids" else 2))

    def float_dtype(self) -> torch.dtype:
        return torch.float64 if self.chance(0.25) else torch.float32

    def uniform(self, shape: Sequence[int], lo: float = -1.0, hi: float = 1.0,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.from_numpy(self.rng.uniform(lo, hi, size=tuple(shape))).to(dtype)

    def ints(self, shape: Sequence[int], lo: int, hi: int, dtype: torch.dtype = torch.int32) -> torch.Tensor:
        """Uniform integers in [lo, hi]."""
        return torch.from_numpy(self.rng.integers(lo, hi + 1, size=tuple(shape), dtype=np.int64)).to(dtype)

    # ------------------------------------------------------------------------------------ value mutations
    def _positions(self, t: torch.Tensor, frac: float) -> torch.Tensor:
        n = t.numel()
        k = max(1, int(n * frac))
        return torch.from_numpy(self.rng.choice(n, min(k, n), replace=False))

    def specials(self, t: torch.Tensor, frac: float = 0.1) -> torch.Tensor:
        """A copy of float ``t`` with NaN, ±inf, huge, denormal and signed-zero values at random places."""
        if t.numel() == 0 or not t.is_floating_point():
            return t
        flat = t.detach().contiguous().clone().view(-1)
        at = self._positions(flat, frac)
        flat[at] = torch.tensor([self.pick(FLOAT_SPECIALS) for _ in range(len(at))], dtype=torch.float64).to(t.dtype)
        return flat.view(t.shape)

    def corrupt_index(self, t: torch.Tensor, count: int, frac: float = 0.1) -> torch.Tensor:
        """A copy of an index tensor with entries outside [0, count): negative, count, INT32_MAX, ..."""
        if t.numel() == 0:
            return t
        flat = t.detach().contiguous().clone().view(-1)
        at = self._positions(flat, frac)
        vals = [self.pick(INDEX_SPECIALS + (count, count + 1)) for _ in range(len(at))]
        info = torch.iinfo(t.dtype) if not t.dtype.is_floating_point and t.dtype != torch.bool else None
        if info is not None:
            vals = [min(max(v, info.min), info.max) for v in vals]
        flat[at] = torch.tensor(vals, dtype=torch.int64).to(t.dtype)
        return flat.view(t.shape)

    def corrupt_ids(self, rast: torch.Tensor, frac: float = 0.15) -> torch.Tensor:
        """A copy of ``rast`` whose id channel holds values that name no triangle (and odd u, v, z/w)."""
        if rast.numel() == 0:
            return rast
        r = rast.detach().contiguous().clone()
        ids = r[..., 3].reshape(-1)
        at = self._positions(ids, frac)
        ids[at] = torch.tensor([self.pick(ID_SPECIALS) for _ in range(len(at))], dtype=torch.float64).to(r.dtype)
        r[..., 3] = ids.view(r.shape[:-1])
        if self.chance(0.3):
            r[..., :3] = self.specials(r[..., :3], 0.05)
        return r

    # ----------------------------------------------------------------------------------- layout mutations
    def relayout(self, t: torch.Tensor, value_changing: bool = True) -> tuple[torch.Tensor, str]:
        """``t`` with a different memory layout: strided, transposed, offset; with ``value_changing`` also
        expanded (a zero stride: one slice repeated) or one element broadcast to the whole shape."""
        kinds = ["strided", "transposed", "offset"]
        if value_changing and t.numel() > 1:
            kinds += ["expanded", "broadcast"]
        kind = self.pick(kinds)
        if t.dim() == 0 or t.numel() == 0:
            kind = "offset"
        if kind == "strided":
            d = self.int(0, t.dim() - 1)
            shape = list(t.shape)
            shape[d] *= 2
            base = torch.zeros(shape, dtype=t.dtype)
            out = base.narrow(d, 0, t.shape[d] * 2)[(slice(None),) * d + (slice(None, None, 2),)]
            out.copy_(t)
            return out, kind
        if kind == "transposed" and t.dim() >= 2:
            a, b = (int(x) for x in self.rng.choice(t.dim(), 2, replace=False))
            return t.transpose(a, b).contiguous().transpose(a, b), kind
        if kind in ("transposed", "offset"):
            k = self.int(1, 7)
            flat = torch.zeros(t.numel() + k, dtype=t.dtype)
            out = flat[k:].view(t.shape)
            out.copy_(t)
            return out, "offset"
        if kind == "expanded":
            dims = [d for d in range(t.dim()) if t.shape[d] > 1]
            d = self.pick(dims)
            return t.narrow(d, 0, 1).expand(t.shape), kind
        return t.reshape(-1)[:1].reshape([1] * t.dim()).expand(t.shape), kind

    def relayout_all(self, *ts: torch.Tensor | None, value_changing: bool = True) -> tuple:
        """Each tensor of ``ts`` (None passes) with a new memory layout; results must not change with it."""
        self.layout_changed = True
        return tuple(t if t is None else self.relayout(t, value_changing)[0] for t in ts)

    def wrong_dtype(self, t: torch.Tensor, name: str) -> torch.Tensor:
        """``t`` in another dtype, which makes the input invalid."""
        t = self.other_dtype(t)
        self.invalid(f"{name} is {t.dtype}")
        return t

    # ------------------------------------------------------------------------------------ shape mutations
    def resize(self, t: torch.Tensor, d: int, n: int) -> torch.Tensor:
        """``t`` with size ``n`` along ``d``, values kept in their domain (slices of ``t`` repeated)."""
        s = t.shape[d]
        if n <= s:
            return t.narrow(d, 0, n).clone()
        if s == 0:
            shape = list(t.shape)
            shape[d] = n
            return torch.zeros(shape, dtype=t.dtype)
        reps = [1] * t.dim()
        reps[d] = -(-n // s)
        return t.repeat(*reps).narrow(d, 0, n).clone()

    def huge(self, t: torch.Tensor, d: int | None = None) -> torch.Tensor:
        """``t`` expanded along one dimension until it would take at least 2^44 bytes (no memory is used)."""
        if t.dim() == 0:
            t = t.reshape(1)
        d = self.int(0, t.dim() - 1) if d is None else d
        rest = math.prod(s for i, s in enumerate(t.shape) if i != d) * t.element_size()
        shape = list(t.shape)
        shape[d] = max(1, -(-HUGE_BYTES // max(rest, 1)))
        if rest == 0 or shape[d] > 2 ** 60:
            shape[d] = 2 ** 40
        src = t.narrow(d, 0, 1) if t.shape[d] >= 1 and t.numel() else torch.zeros(
            [1 if i == d else s for i, s in enumerate(t.shape)], dtype=t.dtype)
        return src.expand(shape)

    def other_dtype(self, t: torch.Tensor, avoid: Sequence[torch.dtype] = ()) -> torch.Tensor:
        choices = [d for d in OTHER_DTYPES if d != t.dtype and d not in avoid]
        d = self.pick(choices)
        return t.detach().to(d)

    def reshape_dims(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` with one dimension more or fewer."""
        if t.dim() == 0 or self.chance(0.5):
            return t.unsqueeze(self.int(0, t.dim()))
        return t.select(self.int(0, t.dim() - 1), 0) if t.numel() else t.sum(0).to(t.dtype)

    # ------------------------------------------------------------------------------------- geometry
    def clip_positions(self, prefix: Sequence[int], vertices: int, dtype: torch.dtype) -> torch.Tensor:
        """Clip-space (x, y, z, w) with w in [0.5, 2] and NDC x, y in [-1.3, 1.3], z in [-0.95, 0.95]."""
        shape = tuple(prefix) + (vertices,)
        w = self.rng.uniform(0.5, 2.0, size=shape)
        x, y = (self.rng.uniform(-1.3, 1.3, size=shape) * w for _ in range(2))
        z = self.rng.uniform(-0.95, 0.95, size=shape) * w
        return torch.from_numpy(np.stack([x, y, z, w], -1)).to(dtype)

    def triangles(self, vertices: int, faces: int) -> torch.Tensor:
        """``(faces, 3)`` int32 in [0, vertices), a few degenerate ones."""
        t = self.rng.integers(0, vertices, size=(faces, 3))
        if faces and self.chance(0.2):
            t[self.int(0, faces - 1), 1] = t[self.int(0, faces - 1), 0]
        return torch.from_numpy(t).to(torch.int32)

    def ranges(self, images: int, faces: int) -> torch.Tensor:
        """Range-mode ``(images, 2)`` int32 (first, count) within ``faces`` triangles."""
        first = self.rng.integers(0, faces + 1, size=images)
        count = np.array([self.int(0, faces - f) for f in first], dtype=np.int64)
        return torch.from_numpy(np.stack([first, count], 1)).to(torch.int32)

    def hand_rast(self, shape: Sequence[int], faces: int, dtype: torch.dtype) -> torch.Tensor:
        """A made-up rasterization: u, v in the triangle, z/w in [-1, 1], ids in [0, faces] (0 = empty)."""
        u = self.rng.uniform(0, 1, size=tuple(shape))
        v = self.rng.uniform(0, 1, size=tuple(shape)) * (1 - u)
        z = self.rng.uniform(-1, 1, size=tuple(shape))
        ids = self.rng.integers(0, faces + 1, size=tuple(shape)).astype(np.float64)
        r = np.stack([u, v, z, ids], -1)
        r[ids == 0] = 0.0
        return torch.from_numpy(r).to(dtype)
