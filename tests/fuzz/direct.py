"""Fuzz cases that call every ``torch.ops.occrecon`` op directly, forward and backward (schemas: csrc/ops/*.cpp).

A direct call bypasses the Python checks, so the C++ checks are the only defence: every op must validate every
argument it reads. Each case draws valid arguments, mutates zero to two of them (dtype, a size, the number of
dimensions, values, memory layout, a huge expanded size, None for an optional tensor, a wrong scalar), and asks
the op's contract below whether the call must succeed, must raise, or may do either. A refused valid call, an
accepted invalid one, a wrong output shape or a non-finite output for finite input is a finding; a crash or a
sanitizer report is caught by the driver.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .gen import FLOATS, Gen, all_finite, big, check, check_finite, check_shape, clones, same_as_contiguous, unchanged

T = torch.Tensor


class Verdict:
    """What a call with these arguments must end in: ``ok``, ``raise`` (with reasons) or ``either``."""

    def __init__(self) -> None:
        self.fails: list[str] = []
        self.doubts: list[str] = []

    def need(self, cond: bool, reason: str) -> bool:
        if not cond:
            self.fails.append(reason)
        return cond

    def doubt(self, reason: str) -> None:
        self.doubts.append(reason)

    def tensor(self, x: object, name: str, optional: bool = False) -> bool:
        if x is None:
            return self.need(optional, f"{name} is None")
        return self.need(isinstance(x, T), f"{name} is no tensor")

    def floating(self, x: object, name: str) -> bool:
        return self.tensor(x, name) and self.need(x.dtype in FLOATS, f"{name} is {x.dtype}")

    def int_arg(self, x: object, name: str) -> int | None:
        if isinstance(x, bool) or isinstance(x, float):
            self.doubt(f"{name} = {x!r} for an int")
            return int(x) if isinstance(x, bool) or math.isfinite(x) else None
        if not isinstance(x, int):
            self.fails.append(f"{name} = {x!r} is no int")
            return None
        if not -(2 ** 63) <= x < 2 ** 63:
            self.fails.append(f"{name} = {x} overflows int64")
            return None
        return x

    def float_arg(self, x: object, name: str) -> float | None:
        if isinstance(x, bool):
            self.doubt(f"{name} = {x!r} for a float")
            return float(x)
        if not isinstance(x, (int, float)):
            self.fails.append(f"{name} = {x!r} is no float")
            return None
        return float(x)

    def bool_arg(self, x: object, name: str) -> None:
        if not isinstance(x, bool):
            if isinstance(x, int) or x is None:  # (the dispatcher reads None as false)
                self.doubt(f"{name} = {x!r} for a bool")
            else:
                self.fails.append(f"{name} = {x!r} is no bool")

    def tri(self, tri: object, vertices: int, name: str = "tri") -> None:
        """csrc/ops/checks.cpp check_tri: [F, 3] int32, every index in [0, V)."""
        if not self.tensor(tri, name):
            return
        if self.need(tri.dim() == 2 and tri.shape[1] == 3, f"{name} {tuple(tri.shape)} is not [F, 3]") and \
                self.need(tri.dtype == torch.int32, f"{name} is {tri.dtype}") and tri.numel():
            self.need(tri.shape[0] < 2 ** 31 - 1, f"{name}: too many triangles")
            if tri.shape[0] < 2 ** 31 - 1:
                lo, hi = int(tri.min()), int(tri.max())
                self.need(lo >= 0 and hi < vertices, f"{name} indices [{lo}, {hi}] outside [0, {vertices})")

    def result(self) -> tuple[str, list[str]]:
        if self.fails:
            return "raise", self.fails
        if self.doubts:
            return "either", self.doubts
        return "ok", []


def _sizes(x: object) -> tuple | None:
    return tuple(x.shape) if isinstance(x, T) else None


# --------------------------------------------------------------------------------------------- argument kinds
# float: any float tensor; rast: [B, H, W, 4] (values: odd ids); tri / topo / index: int32 indices (values: out of
# range); mask: bool; int / double / bool / intlist: scalars. A trailing "?" marks an optional tensor.
KINDS: dict[str, dict[str, str]] = {
    "neighbour_min": {"target": "float", "render": "float", "region": "mask?", "k": "int"},
    "neighbour_min_backward": {"grad_d2": "float", "target": "float", "render": "float", "idx": "index",
                               "k": "int"},
    "rasterize": {"pos": "float", "tri": "tri", "height": "int", "width": "int", "ranges": "index?",
                  "grad_db": "bool", "peel": "rast?"},
    "rasterize_backward": {"pos": "float", "tri": "tri", "rast": "rast", "grad_rast": "float", "grad_db": "float?"},
    "interpolate": {"attr": "float", "rast": "rast", "tri": "tri", "rast_db": "float?", "diff_attrs": "intlist"},
    "interpolate_backward": {"attr": "float", "rast": "rast", "tri": "tri", "rast_db": "float?",
                             "diff_attrs": "intlist", "grad_out": "float", "grad_da": "float?"},
    "antialias_construct_topology_hash": {"tri": "tri"},
    "antialias": {"color": "float", "rast": "rast", "pos": "float", "tri": "tri", "topology_hash": "topo",
                  "pos_gradient_boost": "double"},
    "antialias_backward": {"grad_out": "float", "color": "float", "rast": "rast", "pos": "float", "tri": "tri",
                           "topology_hash": "topo"},
    "sh_shade": {"normals": "float", "albedo": "float", "gamma": "float"},
    "sh_shade_backward": {"grad_out": "float", "normals": "float", "albedo": "float", "gamma": "float"},
    "texture": {"levels": "tensorlist", "uv": "float", "uv_da": "float?", "bias": "float?", "filter": "int",
                "boundary": "int"},
    "texture_backward": {"levels": "tensorlist", "uv": "float", "uv_da": "float?", "bias": "float?", "filter": "int",
                         "boundary": "int", "grad_out": "float"},
    "vertex_normals": {"vertices": "float", "tri": "tri", "eps": "double"},
    "vertex_normals_backward": {"grad_normals": "float", "vertices": "float", "tri": "tri", "normals": "float",
                                "norms": "float", "eps": "double"},
}

BAD_INTS = (0, -1, 1, 2, 3, 5, 16384, 16385, 2 ** 31 - 1, 2 ** 31, 2 ** 63 - 1, -(2 ** 63), 2 ** 64, 3.0, "3", None,
            True)
BAD_DOUBLES = (math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-300, 1e300, 2, "1", None, True)
BAD_BOOLS = (0, 1, None, "yes")
BAD_LISTS = ([], [0], [0, 0], [-1], [3], [7], [2 ** 40], [0.5], None, "all", [True], [0, 1, 2, 3, 4, 5, 6, 7])


def _mutate(g: Gen, args: dict[str, object], kinds: dict[str, str], vertices: int) -> bool:
    """Apply zero to two random mutations to ``args`` in place; True when a value mutation makes outputs
    possibly non-finite."""
    values_changed = False
    for name in g.subset(list(kinds), p=0.65):
        kind = kinds[name].rstrip("?")
        optional = kinds[name].endswith("?")
        x = args[name]
        if kind == "int":
            args[name] = g.pick(BAD_INTS)
        elif kind == "double":
            args[name] = g.pick(BAD_DOUBLES)
        elif kind == "bool":
            args[name] = g.pick(BAD_BOOLS)
        elif kind == "intlist":
            args[name] = g.pick(BAD_LISTS)
        elif kind == "tensorlist":  # one element mutated like a tensor, or the list's length changed
            items = list(x)
            how = g.pick(["dtype", "shape", "ndim", "values", "layout", "drop", "extra", "empty"])
            i = g.int(0, len(items) - 1) if items else 0
            if how == "drop" and items:
                items.pop()
            elif how == "extra" and items:
                items.append(items[-1].clone())
            elif how == "empty":
                items = []
            elif items and how == "dtype":
                items[i] = g.other_dtype(items[i])
            elif items and how == "shape" and items[i].dim():
                d = g.int(0, items[i].dim() - 1)
                items[i] = g.resize(items[i], d, items[i].shape[d] + 1)
            elif items and how == "ndim":
                items[i] = g.reshape_dims(items[i])
            elif items and how == "values":
                values_changed = True
                items[i] = g.specials(items[i])
            elif items and how == "layout":
                items[i], _ = g.relayout(items[i])
                g.layout_changed = True
            args[name] = items
        elif x is None:
            continue
        else:
            how = g.pick(["dtype", "shape", "shape", "ndim", "values", "values", "layout", "huge"]
                         + (["none"] if optional else []))
            if how == "dtype":
                args[name] = g.other_dtype(x)
            elif how == "shape" and x.dim():
                d = g.int(0, x.dim() - 1)
                s = x.shape[d]
                args[name] = g.resize(x, d, g.pick([n for n in (0, 1, s + 1, max(s - 1, 0), 2 * s + 1) if n != s]
                                                   or [s + 1]))
            elif how == "ndim":
                args[name] = g.reshape_dims(x)
            elif how == "values":
                values_changed = True
                if kind == "float":
                    args[name] = g.specials(x)
                elif kind == "rast":
                    args[name] = g.corrupt_ids(x)
                elif kind in ("tri", "index", "topo"):
                    args[name] = g.corrupt_index(x, vertices, 0.2) if g.chance(0.6) else g.ints(
                        x.shape, -3, vertices + 3, x.dtype)
                elif kind == "mask":
                    args[name] = torch.from_numpy(g.rng.random(tuple(x.shape)) < 0.5)
            elif how == "layout":
                args[name], lay = g.relayout(x)
                g.layout_changed = True
                values_changed |= lay in ("expanded", "broadcast")  # (then rast no longer matches pos)
            elif how == "huge":
                args[name] = g.huge(x)
            elif how == "none":
                args[name] = None
        g.note(f"mutated {name}")
    return values_changed


# ----------------------------------------------------------------------------------------------- contracts
def _like(v: Verdict, a: dict, name: str, ref: str) -> None:
    """``a[name]`` (a gradient) must have ``a[ref]``'s shape and dtype."""
    x, r = a[name], a[ref]
    if v.tensor(x, name) and isinstance(r, T):
        v.need(x.shape == r.shape and x.dtype == r.dtype, f"{name} {x.dtype} {tuple(x.shape)} does not match {ref}")


def _contract(*parts: Callable[[Verdict, dict], None]) -> Callable[[dict], Verdict]:
    """A contract made of argument checks, applied in order."""
    def contract(a: dict) -> Verdict:
        v = Verdict()
        for part in parts:
            part(v, a)
        return v

    return contract


def _neighbour_common(v: Verdict, target, render, k) -> None:
    if not (v.floating(target, "target") and v.tensor(render, "render")):
        return
    if v.need(target.dim() == 4, f"target {tuple(target.shape)} is not (B, C, H, W)"):
        v.need(render.shape == target.shape, f"render {tuple(render.shape)} != target {tuple(target.shape)}")
        v.need(render.dtype == target.dtype, f"render is {render.dtype}, target {target.dtype}")
        v.need(target.shape[1] >= 1, "no channels")
        v.need(max(target.shape[1:]) < 2 ** 30, "image dimensions too large")
        kk = v.int_arg(k, "k")
        if kk is not None:
            v.need(kk >= 1 and kk % 2 == 1 and kk <= min(target.shape[2:]), f"k = {kk} for {tuple(target.shape)}")


def contract_neighbour_min(a) -> Verdict:
    v = Verdict()
    _neighbour_common(v, a["target"], a["render"], a["k"])
    r, t = a["region"], a["target"]
    if v.tensor(r, "region", optional=True) and r is not None:
        v.need(r.dtype == torch.bool, f"region is {r.dtype}")
        if isinstance(t, T) and t.dim() == 4:
            v.need(r.shape == (t.shape[0],) + tuple(t.shape[2:]), f"region {tuple(r.shape)} is not (B, H, W)")
    return v


def contract_neighbour_min_backward(a) -> Verdict:
    v = Verdict()
    t = a["target"]
    _neighbour_common(v, t, a["render"], a["k"])
    gd, idx = a["grad_d2"], a["idx"]
    if v.tensor(gd, "grad_d2") and v.tensor(idx, "idx") and isinstance(t, T) and t.dim() == 4:
        bhw = (t.shape[0],) + tuple(t.shape[2:])
        v.need(gd.shape == bhw, f"grad_d2 {tuple(gd.shape)} is not {bhw}")
        v.need(idx.shape == bhw, f"idx {tuple(idx.shape)} is not {bhw}")
        v.need(idx.dtype == torch.int32, f"idx is {idx.dtype}")
        v.need(gd.dtype == t.dtype, f"grad_d2 is {gd.dtype}, target {t.dtype}")
    return v


def _pos(v: Verdict, pos) -> int | None:
    """Vertex count of a valid [B, V, 4] / [V, 4] pos, else None."""
    if v.floating(pos, "pos") and v.need(pos.dim() in (2, 3) and pos.shape[-1] == 4,
                                         f"pos {tuple(pos.shape)} is not [B, V, 4] or [V, 4]"):
        return pos.shape[-2]
    return None


def contract_rasterize(a) -> Verdict:
    v = Verdict()
    nv = _pos(v, a["pos"])
    h, w = v.int_arg(a["height"], "height"), v.int_arg(a["width"], "width")
    for s, name in ((h, "height"), (w, "width")):
        if s is not None:
            v.need(1 <= s <= 16384, f"{name} = {s}")
    v.bool_arg(a["grad_db"], "grad_db")
    tri = a["tri"]
    if nv is not None:
        v.tri(tri, nv)
    r = a["ranges"]
    v.tensor(r, "ranges", optional=True)
    if nv is not None and a["pos"].dim() == 2 and v.need(r is not None, "range mode without ranges"):
        if v.need(r.dim() == 2 and r.shape[1] == 2 and r.dtype == torch.int32, f"ranges {r.dtype} {tuple(r.shape)}"):
            if r.numel() > 1 << 20:
                v.doubt("huge ranges")
            elif isinstance(tri, T) and tri.dim() == 2 and r.numel():
                first, count = r[:, 0].long(), r[:, 1].long()
                v.need(bool((first >= 0).all() and (count >= 0).all() and ((first + count) <= tri.shape[0]).all()),
                       "ranges do not fit the triangles")
    peel = a["peel"]
    if peel is not None and v.tensor(peel, "peel") and nv is not None and h is not None and w is not None:
        pos = a["pos"]
        b = pos.shape[0] if pos.dim() == 3 else (r.shape[0] if isinstance(r, T) and r.dim() == 2 else None)
        if b is not None:
            v.need(tuple(peel.shape) == (b, h, w, 4) and peel.dtype == pos.dtype, f"peel {peel.dtype} "
                   f"{tuple(peel.shape)}")
    return v


def contract_rasterize_backward(a) -> Verdict:
    v = Verdict()
    pos, rast, gr, gdb = a["pos"], a["rast"], a["grad_rast"], a["grad_db"]
    nv = _pos(v, pos)
    if nv is not None:
        v.tri(a["tri"], nv)
    if v.floating(rast, "rast") and v.need(rast.dim() == 4 and rast.shape[3] == 4, f"rast {tuple(rast.shape)}"):
        if nv is not None:
            v.need(pos.dim() == 2 or pos.shape[0] == rast.shape[0], "pos batch != rast batch")
            v.need(rast.dtype == pos.dtype, f"rast is {rast.dtype}, pos {pos.dtype}")
        if v.tensor(gr, "grad_rast"):
            v.need(gr.shape == rast.shape, f"grad_rast {tuple(gr.shape)} != rast {tuple(rast.shape)}")
            v.need(gr.dtype == rast.dtype, f"grad_rast is {gr.dtype}")
        if v.tensor(gdb, "grad_db", optional=True) and gdb is not None:
            v.need(gdb.shape == rast.shape, f"grad_db {tuple(gdb.shape)} != rast {tuple(rast.shape)}")
            if gdb.dtype not in FLOATS:
                v.doubt(f"grad_db is {gdb.dtype}: refused or converted")
    return v


def _interp_common(v: Verdict, a) -> tuple[int, tuple] | None:
    """(number of diff attributes, (B, H, W, C)) for valid interpolate arguments, else None."""
    attr, rast, db, diff = a["attr"], a["rast"], a["rast_db"], a["diff_attrs"]
    ok = v.floating(attr, "attr") and v.need(attr.dim() == 3, f"attr {tuple(attr.shape)} is not [B, V, C]")
    ok = v.floating(rast, "rast") and v.need(rast.dim() == 4 and rast.shape[3] == 4,
                                             f"rast {tuple(rast.shape)}") and ok
    if not ok:
        return None
    v.need(rast.dtype == attr.dtype, f"rast is {rast.dtype}, attr {attr.dtype}")
    v.need(attr.shape[0] in (1, rast.shape[0]), f"attr batch {attr.shape[0]}, rast batch {rast.shape[0]}")
    v.tri(a["tri"], attr.shape[1])
    if not isinstance(diff, list) or not all(isinstance(i, int) for i in diff):
        if isinstance(diff, list) and all(isinstance(i, (int, float)) for i in diff):
            v.doubt(f"diff_attrs {diff!r}")
        else:
            v.fails.append(f"diff_attrs {diff!r}")
        return None
    c = attr.shape[2]
    v.need(all(0 <= i < c for i in diff), f"diff_attrs {diff} for {c} attributes")
    v.tensor(db, "rast_db", optional=True)
    if diff:
        if v.need(db is not None, "diff_attrs without rast_db"):
            v.need(db.shape == rast.shape and db.dtype == attr.dtype, f"rast_db {db.dtype} {tuple(db.shape)}")
    return len(diff), tuple(rast.shape[:3]) + (c,)


contract_interpolate = _contract(_interp_common)


def contract_interpolate_backward(a) -> Verdict:
    v = Verdict()
    info = _interp_common(v, a)
    go, gda = a["grad_out"], a["grad_da"]
    if v.tensor(go, "grad_out") and info is not None:
        nd, bhwc = info
        v.need(go.shape == bhwc, f"grad_out {tuple(go.shape)} is not {bhwc}")
        if go.dtype not in FLOATS:
            v.doubt(f"grad_out is {go.dtype}: refused or converted")
        if v.tensor(gda, "grad_da", optional=True) and gda is not None and nd:
            want = bhwc[:3] + (2 * nd,)
            v.need(gda.shape == want, f"grad_da {tuple(gda.shape)} is not {want}")
            if gda.dtype not in FLOATS:
                v.doubt(f"grad_da is {gda.dtype}: refused or converted")
    return v


def _aa_tri(v: Verdict, tri, name: str = "tri") -> bool:
    return v.tensor(tri, name) and v.need(tri.dim() == 2 and tri.shape[1] == 3 and tri.shape[0] >= 1,
                                          f"{name} {tuple(tri.shape)} is not (F >= 1, 3)") and \
        v.need(tri.dtype == torch.int32, f"{name} is {tri.dtype}") and v.need(tri.shape[0] < 2 ** 29, "too many")


contract_topology = _contract(lambda v, a: _aa_tri(v, a["tri"]) and None)


def _aa_common(v: Verdict, a) -> None:
    color, rast, pos, tri, topo = a["color"], a["rast"], a["pos"], a["tri"], a["topology_hash"]
    if not (v.floating(color, "color") and v.need(color.dim() == 4 and min(color.shape) >= 1,
                                                  f"color {tuple(color.shape)}")):
        return
    v.need(max(color.shape[1:]) < 2 ** 30, "image dimensions too large")
    b, h, w, _ = color.shape
    if v.tensor(rast, "rast"):
        v.need(rast.shape == (b, h, w, 4), f"rast {tuple(rast.shape)} is not {(b, h, w, 4)}")
        v.need(rast.dtype == torch.float32, f"rast is {rast.dtype}")
    if v.tensor(pos, "pos"):
        inst = pos.dim() == 3 and pos.shape[0] == b and pos.shape[2] == 4
        if v.need(inst or (pos.dim() == 2 and pos.shape[1] == 4), f"pos {tuple(pos.shape)}"):
            v.need(1 <= pos.shape[-2] < 2 ** 31, "pos vertex count")
            v.need(pos.dtype == color.dtype, f"pos is {pos.dtype}, color {color.dtype}")
    if _aa_tri(v, tri) and v.tensor(topo, "topology_hash"):
        v.need(topo.shape == (tri.shape[0], 3) and topo.dtype == torch.int32,
               f"topology_hash {topo.dtype} {tuple(topo.shape)}")


contract_antialias = _contract(_aa_common, lambda v, a: v.float_arg(a["pos_gradient_boost"], "pos_gradient_boost"))
contract_antialias_backward = _contract(_aa_common, lambda v, a: _like(v, a, "grad_out", "color"))


def _sh_common(v: Verdict, a) -> None:
    n, al, gm = a["normals"], a["albedo"], a["gamma"]
    if not (v.floating(n, "normals") and v.need(n.dim() == 3 and n.shape[2] == 3, f"normals {tuple(n.shape)}")):
        return
    b, nn = n.shape[0], n.shape[1]
    if v.tensor(al, "albedo"):
        v.need(al.dim() == 3 and al.shape[0] in (b, 1) and al.shape[1:] == (nn, 3), f"albedo {tuple(al.shape)}")
        v.need(al.dtype == n.dtype, f"albedo is {al.dtype}")
    if v.tensor(gm, "gamma"):
        v.need(gm.shape == (b, 9, 3), f"gamma {tuple(gm.shape)}")
        v.need(gm.dtype == n.dtype, f"gamma is {gm.dtype}")


contract_sh_shade = _contract(_sh_common)
contract_sh_shade_backward = _contract(_sh_common, lambda v, a: _like(v, a, "grad_out", "normals"))


def _texture_common(v: Verdict, a) -> None:
    f, bm = v.int_arg(a["filter"], "filter"), v.int_arg(a["boundary"], "boundary")
    if f is not None:
        v.need(0 <= f <= 3, f"filter = {f}")
    if bm is not None:
        v.need(bm in (0, 1, 2, 3), f"boundary = {bm}")
    cube = bm == 0
    levels, uv = a["levels"], a["uv"]
    if not v.need(isinstance(levels, list) and 1 <= len(levels) <= 17, "levels: 1 to 17 tensors"):
        return
    t0 = levels[0]
    dims = 5 if cube else 4
    if not (v.floating(t0, "levels[0]") and v.need(t0.dim() == dims and min(t0.shape) > 0, f"tex {tuple(t0.shape)}")):
        return
    if cube and not v.need(t0.shape[1] == 6 and t0.shape[2] == t0.shape[3], f"cube tex {tuple(t0.shape)}"):
        return
    nt, h, w, c = t0.shape[0], t0.shape[-3], t0.shape[-2], t0.shape[-1]
    v.need(h <= 65536 and w <= 65536 and c <= 2 ** 20, f"tex {tuple(t0.shape)} too large")
    for l, t in enumerate(levels):
        if v.tensor(t, f"levels[{l}]"):
            want = (nt, *((6,) if cube else ()), max(h >> l, 1), max(w >> l, 1), c)
            v.need(tuple(t.shape) == want, f"level {l} {tuple(t.shape)}")
            v.need(t.dtype == t0.dtype, f"level {l} is {t.dtype}")
    uvc = 3 if cube else 2
    if not (v.floating(uv, "uv") and v.need(uv.dim() == 4 and uv.shape[3] == uvc and uv.shape[0] > 0,
                                            f"uv {tuple(uv.shape)}")):
        return
    v.need(uv.dtype == t0.dtype, f"uv is {uv.dtype}")
    v.need(nt in (1, uv.shape[0]), f"tex minibatch {nt} vs uv {uv.shape[0]}")
    if f in (2, 3):
        present = 0
        for name, shape in (("uv_da", (*uv.shape[:3], 6 if cube else 4)), ("bias", tuple(uv.shape[:3]))):
            x = a[name]
            if x is None or not isinstance(x, T) or x.numel() == 0:
                v.need(x is None or isinstance(x, T), f"{name} is no tensor")
                continue
            present += 1
            v.need(tuple(x.shape) == shape and x.dtype == uv.dtype, f"{name} {x.dtype} {tuple(x.shape)}")
        v.need(present > 0, "a mipmap filter without uv_da or bias")


def _texture_grad(v: Verdict, a) -> None:
    g, uv, levels = a["grad_out"], a["uv"], a["levels"]
    if v.tensor(g, "grad_out") and isinstance(uv, T) and uv.dim() == 4 and isinstance(levels, list) and levels \
            and isinstance(levels[0], T) and levels[0].dim() in (4, 5):
        v.need(tuple(g.shape) == (*uv.shape[:3], levels[0].shape[-1]) and g.dtype == uv.dtype,
               f"grad_out {g.dtype} {tuple(g.shape)}")


contract_texture = _contract(_texture_common)
contract_texture_backward = _contract(_texture_common, _texture_grad)


def _normals_common(v: Verdict, a) -> None:
    verts, tri = a["vertices"], a["tri"]
    eps = v.float_arg(a["eps"], "eps")
    if eps is not None:
        v.need(eps > 0 and math.isfinite(eps), f"eps = {eps}")
        if isinstance(verts, T) and verts.dtype in FLOATS:  # a normal number in the vertices' dtype (fuzz finding F1)
            info = torch.finfo(verts.dtype)
            v.need(info.tiny <= eps <= info.max, f"eps = {eps} is no normal {verts.dtype} number")
    if v.floating(verts, "vertices") and v.need(verts.dim() == 3 and verts.shape[2] == 3,
                                                f"vertices {tuple(verts.shape)}"):
        v.need(verts.shape[1] < 2 ** 31 - 1, "too many vertices")
        if isinstance(tri, T) and tri.dim() >= 1:
            v.need(tri.shape[0] < 2 ** 29, "too many triangles")
        v.tri(tri, verts.shape[1])
    elif isinstance(tri, T) and tri.dim() == 0:
        v.fails.append("0-dim tri")


def _normals_backward(v: Verdict, a: dict) -> None:
    verts, norms = a["vertices"], a["norms"]
    if isinstance(verts, T) and verts.dim() == 3:
        _like(v, a, "grad_normals", "vertices")
        _like(v, a, "normals", "vertices")
        if v.tensor(norms, "norms"):
            v.need(norms.shape == verts.shape[:2] and norms.dtype == verts.dtype,
                   f"norms {norms.dtype} {tuple(norms.shape)}")


contract_vertex_normals = _contract(_normals_common)
contract_vertex_normals_backward = _contract(_normals_common, _normals_backward)


# ---------------------------------------------------------------------------------------------- valid inputs
def _mesh(g: Gen, dtype: torch.dtype, range_mode: bool = False):
    b, nv, nf, h, w = g.int(1, 3), g.size(3, 16), g.size(1, 20), g.size(1, 20), g.size(1, 20)
    pos = g.clip_positions(() if range_mode else (b,), nv, dtype)
    tri = g.triangles(nv, nf)
    ranges = g.ranges(b, nf) if range_mode else None
    return b, nv, nf, h, w, pos, tri, ranges


def _rast(g: Gen, pos, tri, h, w, ranges, b, nf, dtype):
    """(rast, rast_db, consistent): from the rasterizer, or made up (then not consistent with pos)."""
    if g.chance(0.75):
        rast, db = torch.ops.occrecon.rasterize(pos, tri, h, w, ranges, True)
        return rast, db, True
    return g.hand_rast((b, h, w), nf, dtype), g.uniform((b, h, w, 4), -2, 2, dtype), False


def build_neighbour_min(g: Gen, backward: bool):
    dtype = g.float_dtype()
    b, c, h, w = g.int(0 if g.chance(0.05) else 1, 2), g.int(1, 4), g.size(1, 20), g.size(1, 20)
    k = g.pick([1, 3, 5])
    k = min(k, (min(h, w) - 1) // 2 * 2 + 1)
    target, render = g.uniform((b, c, h, w), 0, 1, dtype), g.uniform((b, c, h, w), 0, 1, dtype)
    region = torch.from_numpy(g.rng.random((b, h, w)) < 0.6) if g.chance(0.5) else None
    if not backward:
        return {"target": target, "render": render, "region": region, "k": k}, 4, True
    _, idx = torch.ops.occrecon.neighbour_min(target, render, region, k)
    return {"grad_d2": g.uniform((b, h, w), -1, 1, dtype), "target": target, "render": render, "idx": idx,
            "k": k}, k * k, True


def build_rasterize(g: Gen, backward: bool):
    dtype = g.float_dtype()
    range_mode = g.chance(0.25)
    b, nv, nf, h, w, pos, tri, ranges = _mesh(g, dtype, range_mode)
    if not range_mode and g.chance(0.2):
        ranges = g.ints((b, 2), -5, 5)  # ignored in instanced mode
    if not backward:
        peel = None
        if g.chance(0.3):  # a depth-peeling layer: the previous layer's rast (or a random one)
            peel = (torch.ops.occrecon.rasterize(pos, tri, h, w, ranges, True)[0] if g.chance(0.7) else
                    g.uniform((b, h, w, 4), -2, 2, dtype))
        return {"pos": pos, "tri": tri, "height": h, "width": w, "ranges": ranges, "grad_db": g.chance(0.5),
                "peel": peel}, nv, True
    rast, db, consistent = _rast(g, pos, tri, h, w, ranges, b, nf, dtype)
    return {"pos": pos, "tri": tri, "rast": rast, "grad_rast": g.uniform(rast.shape, -1, 1, dtype),
            "grad_db": g.uniform(rast.shape, -1, 1, dtype) if g.chance(0.6) else None}, nv, consistent


def build_interpolate(g: Gen, backward: bool):
    dtype = g.float_dtype()
    b, nv, nf, h, w, pos, tri, _ = _mesh(g, dtype)
    rast, db, _ = _rast(g, pos, tri, h, w, None, b, nf, dtype)
    c = g.int(1, 5)
    attr = g.uniform((g.pick([b, 1]), nv, c), -2, 2, dtype)
    diff = sorted({int(i) for i in g.rng.integers(0, c, g.int(0, 3))})
    args = {"attr": attr, "rast": rast, "tri": tri, "rast_db": db if diff or g.chance(0.5) else None,
            "diff_attrs": diff}
    if backward:
        args["grad_out"] = g.uniform((b, h, w, c), -1, 1, dtype)
        args["grad_da"] = g.uniform((b, h, w, 2 * len(diff)), -1, 1, dtype) if g.chance(0.7) else None
    return args, nv, True


def build_topology(g: Gen, backward: bool):
    nv, nf = g.int(1, 12), g.int(1, 30)
    return {"tri": g.triangles(nv, nf)}, nv, True


def build_antialias(g: Gen, backward: bool):
    dtype = g.float_dtype()
    range_mode = g.chance(0.2)
    b, nv, nf, h, w, pos, tri, ranges = _mesh(g, dtype, range_mode)
    rast, _ = torch.ops.occrecon.rasterize(pos, tri, h, w, ranges, True)
    rast = rast.float()
    c = g.int(1, 4)
    color = g.uniform((b, h, w, c), 0, 1, dtype)
    topo = torch.ops.occrecon.antialias_construct_topology_hash(tri)
    if not backward:
        return {"color": color, "rast": rast, "pos": pos, "tri": tri, "topology_hash": topo,
                "pos_gradient_boost": g.pick([1.0, 2.0, 0.0])}, nv, True
    return {"grad_out": g.uniform(color.shape, -1, 1, dtype), "color": color, "rast": rast, "pos": pos, "tri": tri,
            "topology_hash": topo}, nv, True


def build_sh_shade(g: Gen, backward: bool):
    dtype = g.float_dtype()
    b, n = g.int(0 if g.chance(0.05) else 1, 3), g.int(0 if g.chance(0.05) else 1, 40)
    nrm = g.uniform((b, n, 3), -1, 1, dtype)
    nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    args = {"normals": nrm, "albedo": g.uniform((g.pick([b, 1]), n, 3), 0, 1, dtype),
            "gamma": g.uniform((b, 9, 3), -1, 1, dtype)}
    if backward:
        args = {"grad_out": g.uniform((b, n, 3), -1, 1, dtype), **args}
    return args, 3, True


def build_texture(g: Gen, backward: bool):
    dtype = g.float_dtype()
    n = g.int(1, 3)
    nt = g.pick([1, n])
    cube = g.chance(0.3)
    h, w, c = g.pick([1, 2, 4, 8]), g.pick([1, 2, 4, 16]), g.int(1, 5)
    if cube:
        w = h
    tex = g.uniform((nt, 6, h, w, c) if cube else (nt, h, w, c), 0, 1, dtype)
    levels = [tex]
    t = tex
    while t.shape[-3] > 1 or t.shape[-2] > 1:  # a stack of the right sizes (any contents would do)
        t = t[..., ::2 if t.shape[-3] > 1 else 1, ::2 if t.shape[-2] > 1 else 1, :].contiguous()
        levels.append(t)
    if g.chance(0.3):
        levels = levels[:g.int(1, len(levels))]
    oh, ow = g.int(0 if g.chance(0.05) else 1, 6), g.int(1, 6)
    args = {"levels": levels, "uv": g.uniform((n, oh, ow, 3 if cube else 2), -0.5 if not cube else -1, 1.5, dtype),
            "uv_da": g.uniform((n, oh, ow, 6 if cube else 4), -0.5, 0.5, dtype) if g.chance(0.7) else None,
            "bias": g.uniform((n, oh, ow), -1, 4, dtype) if g.chance(0.5) else None,
            "filter": g.int(0, 3), "boundary": 0 if cube else g.int(1, 3)}
    if args["filter"] >= 2 and args["uv_da"] is None and args["bias"] is None:
        args["bias"] = g.uniform((n, oh, ow), -1, 4, dtype)
    if backward:
        args["grad_out"] = g.uniform((n, oh, ow, c), -1, 1, dtype)
    return args, 0, True


def build_vertex_normals(g: Gen, backward: bool):
    dtype = g.float_dtype()
    b, nv, nf = g.int(0 if g.chance(0.05) else 1, 3), g.int(1, 20), g.int(0, 30)
    verts = g.uniform((b, nv, 3), -1, 1, dtype)
    tri = g.triangles(nv, nf)
    eps = g.pick([1e-12, 1e-6, 0.5])
    if not backward:
        return {"vertices": verts, "tri": tri, "eps": eps}, nv, True
    normals, norms = torch.ops.occrecon.vertex_normals(verts, tri, eps)
    return {"grad_normals": g.uniform(verts.shape, -1, 1, dtype), "vertices": verts, "tri": tri, "normals": normals,
            "norms": norms, "eps": eps}, nv, True


# -------------------------------------------------------------------------------------------- output shapes
def shapes(name: str, a: dict) -> list[tuple[tuple, torch.dtype]]:
    f = lambda k: a[k].dtype  # noqa: E731
    if name == "neighbour_min":
        b, _, h, w = a["target"].shape
        return [((b, h, w), f("target")), ((b, h, w), torch.int32)]
    if name == "neighbour_min_backward":
        return [(tuple(a["target"].shape), f("target")), (tuple(a["render"].shape), f("target"))]
    if name == "rasterize":
        pos = a["pos"]
        b = pos.shape[0] if pos.dim() == 3 else a["ranges"].shape[0]
        return [((b, a["height"], a["width"], 4), f("pos"))] * 2
    if name == "rasterize_backward":
        return [(tuple(a["pos"].shape), f("pos"))]
    if name in ("interpolate", "interpolate_backward"):
        b, h, w, _ = a["rast"].shape
        c, nd = a["attr"].shape[2], len(a["diff_attrs"])
        if name == "interpolate":
            return [((b, h, w, c), f("attr")), ((b, h, w, 2 * nd), f("attr"))]
        db = tuple(a["rast_db"].shape) if nd else (0,)
        return [(tuple(a["attr"].shape), f("attr")), (tuple(a["rast"].shape), f("attr")), (db, f("attr"))]
    if name == "antialias_construct_topology_hash":
        return [((a["tri"].shape[0], 3), torch.int32)]
    if name == "antialias":
        return [(tuple(a["color"].shape), f("color"))]
    if name == "antialias_backward":
        return [(tuple(a["color"].shape), f("color")), (tuple(a["pos"].shape), f("color"))]
    if name == "sh_shade":
        return [(tuple(a["normals"].shape), f("normals"))]
    if name == "sh_shade_backward":
        return [(tuple(a[k].shape), f("normals")) for k in ("normals", "albedo", "gamma")]
    if name in ("texture", "texture_backward"):
        uv, levels = a["uv"], a["levels"]
        out = ((*uv.shape[:3], levels[0].shape[-1]), f("uv"))
        if name == "texture":
            return [out]
        mip = a["filter"] in (2, 3)
        opt = [tuple(a[k].shape) if mip and a[k] is not None and a[k].numel() > 0 else (0,) for k in ("uv_da", "bias")]
        return ([(tuple(t.shape), f("uv")) for t in levels] + [(tuple(uv.shape), f("uv"))]
                + [(s, f("uv")) for s in opt])
    if name == "vertex_normals":
        v = a["vertices"]
        return [(tuple(v.shape), f("vertices")), (tuple(v.shape[:2]), f("vertices"))]
    return [(tuple(a["vertices"].shape), f("vertices"))]  # vertex_normals_backward


def _direct_case(name: str, build: Callable, contract: Callable[[dict], Verdict]) -> Callable[[Gen], None]:
    backward = name.endswith("_backward")

    def case(g: Gen) -> None:
        args, vertices, consistent = build(g, backward)
        values_changed = _mutate(g, args, KINDS[name], vertices)
        expect, reasons = contract(args).result()
        g.expect, g.reasons = expect, reasons
        fn = getattr(torch.ops.occrecon, name)
        vals = list(args.values())
        before = clones(vals)
        out = g.call(f"torch.ops.occrecon.{name}", fn, *vals)
        unchanged(before, vals, name)
        if expect != "ok":
            return
        outs = out if isinstance(out, (tuple, list)) else (out,)
        want = shapes(name, args)
        check(len(outs) == len(want), f"{name} returned {len(outs)} tensors, expected {len(want)}")
        for i, (o, (shape, dtype)) in enumerate(zip(outs, want)):
            check_shape(o, shape, f"{name} output {i}", dtype)
            if consistent and not values_changed and not any(big(x) for x in vals) and all_finite(*vals):
                check_finite(o, f"{name} output {i}")
        same_as_contiguous(g, name, fn, vals, {}, out)

    case.__doc__ = f"torch.ops.occrecon.{name} called directly with mutated arguments."
    return case


_BUILD = {
    "neighbour_min": (build_neighbour_min, contract_neighbour_min),
    "neighbour_min_backward": (build_neighbour_min, contract_neighbour_min_backward),
    "rasterize": (build_rasterize, contract_rasterize),
    "rasterize_backward": (build_rasterize, contract_rasterize_backward),
    "interpolate": (build_interpolate, contract_interpolate),
    "interpolate_backward": (build_interpolate, contract_interpolate_backward),
    "antialias_construct_topology_hash": (build_topology, contract_topology),
    "antialias": (build_antialias, contract_antialias),
    "antialias_backward": (build_antialias, contract_antialias_backward),
    "sh_shade": (build_sh_shade, contract_sh_shade),
    "sh_shade_backward": (build_sh_shade, contract_sh_shade_backward),
    "texture": (build_texture, contract_texture),
    "texture_backward": (build_texture, contract_texture_backward),
    "vertex_normals": (build_vertex_normals, contract_vertex_normals),
    "vertex_normals_backward": (build_vertex_normals, contract_vertex_normals_backward),
}
#: one case per registered op, by op name (tests/fuzz/test_fuzz.py checks that every registered op is here)
CASES: dict[str, Callable[[Gen], None]] = {n: _direct_case(n, b, c) for n, (b, c) in _BUILD.items()}
