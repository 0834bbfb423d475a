"""The fuzz cases of the public ops (occrecon.render, occrecon.ops) and the registry of every case.

Each case draws a valid input, applies zero to two random mutations (each either keeps the input valid: values,
memory layout; or makes it invalid / doubtful: dtype, shape, index range, scalar arguments, huge sizes), calls the
op through :meth:`Gen.call` with the matching expectation, checks cheap invariants of the result, and runs the
backward pass through autograd. The direct ``torch.ops.occrecon.*`` cases are in :mod:`tests.fuzz.direct`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

import occrecon.ops as ops
import occrecon.render as dr

from . import direct
from .gen import Gen, big, check, check_finite, check_shape, clones, describe, equal, same_as_contiguous, unchanged


def _call(g: Gen, label: str, fn, args: list, kwargs: dict):
    """``fn(*args, **kwargs)`` through :meth:`Gen.call`: the result for valid input (checked to leave its inputs
    unchanged), None when a result was merely allowed (a doubtful input: no invariants to check)."""
    before = clones(args)
    out = g.call(label, fn, *args, **kwargs)
    unchanged(before, args, label)
    return out if g.expect == "ok" else None


def _grads(label: str, g: Gen, loss_fn, leaves: dict[str, torch.Tensor], finite: bool) -> None:
    """Backward of ``loss_fn()`` into ``leaves``: each gradient has its leaf's shape (finite for finite input)."""
    g.call(f"backward of {label}", lambda: loss_fn().backward())
    for name, leaf in leaves.items():
        if leaf.grad is None:
            continue
        check_shape(leaf.grad, leaf.shape, f"{label}: grad of {name}")
        if finite:
            check_finite(leaf.grad, f"{label}: grad of {name}")


def _weights(t: torch.Tensor, g: Gen) -> torch.Tensor:
    return g.uniform(t.shape, -1, 1, t.dtype)


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True) if t.is_floating_point() else t


# ------------------------------------------------------------------------------------------------ rasterize
def case_rasterize(g: Gen) -> None:
    dtype = g.float_dtype()
    b, nv, nf = g.int(1, 3), g.size(3, 24), g.size(1, 30)
    h, w = g.size(1, 32), g.size(1, 32)
    range_mode = g.chance(0.25)
    pos = g.clip_positions(() if range_mode else (b,), nv, dtype)
    tri = g.triangles(nv, nf)
    ranges = g.ranges(b, nf) if range_mode else None
    resolution: object = (h, w)
    glctx: object = g.pick([None, dr.RasterizeCudaContext()])
    grad_db: object = g.chance(0.5)
    finite = True
    for m in g.subset(["pos-values", "layout", "pos-dtype", "pos-shape", "tri-dtype", "tri-shape", "tri-values",
                       "tri-empty", "resolution", "huge", "ranges", "glctx", "grad_db"]):
        if m == "pos-values":
            pos, finite = g.specials(pos, 0.2), False
            if g.chance(0.3):
                pos[..., 3] = torch.tensor(g.pick([0.0, -1.0, 1e-30, -0.0]), dtype=dtype)
        elif m == "layout":
            pos, tri = g.relayout_all(pos, tri)
        elif m == "pos-dtype":
            pos = g.other_dtype(pos)
            if pos.dtype not in (torch.float32, torch.float64):
                g.invalid(f"pos is {pos.dtype}")
            else:
                dtype = pos.dtype
        elif m == "pos-shape":
            if g.chance(0.5):
                pos = g.resize(pos, pos.dim() - 1, g.pick([0, 1, 3, 5]))
                g.invalid("pos has not 4 components")
            else:
                pos = g.reshape_dims(pos)
                if pos.dim() not in (2, 3) or pos.shape[-1] != 4:
                    g.invalid(f"pos has shape {tuple(pos.shape)}")
                else:
                    g.doubtful(f"pos reshaped to {tuple(pos.shape)}")
        elif m == "tri-dtype":
            tri = g.other_dtype(tri)
        elif m == "tri-shape":
            tri = g.resize(tri, 1, g.pick([0, 2, 4])) if g.chance(0.5) else g.reshape_dims(tri)
        elif m == "tri-values":
            tri = g.corrupt_index(tri, nv)
        elif m == "tri-empty":
            tri = tri[:0]
            ranges = torch.zeros_like(ranges) if ranges is not None else None
        elif m == "resolution":
            resolution = g.pick([(0, w), (h, -1), (16385, 4), (4, 2 ** 31), (2 ** 63, 1), (h,), (h, w, 1), None,
                                 "8x8", (float(h), float(w)), (h + 0.5, w), np.array([h, w])])
            if isinstance(resolution, np.ndarray) or resolution == (float(h), float(w)):
                g.doubtful("resolution given as floats / an array")
            elif isinstance(resolution, tuple) and len(resolution) == 2 and isinstance(resolution[0], float):
                g.doubtful("fractional resolution")
            else:
                g.invalid(f"resolution {resolution!r}")
        elif m == "huge":  # 2^14 images of 16384 x 16384: an output of 2^47 bytes, never allocated
            resolution = (16384, 16384)
            if pos.dim() == 3:
                pos = pos[:1].expand(2 ** 14, *pos.shape[1:])
            elif ranges is not None and ranges.dim() == 2 and ranges.shape[0]:
                ranges = ranges[:1].expand(2 ** 14, *ranges.shape[1:])
            g.invalid("an output of 2^47 bytes")
        elif m == "ranges" and ranges is not None:
            ranges = g.pick([g.corrupt_index(ranges, nf), ranges.long(), ranges.float(), ranges[:, :1], None,
                             ranges.reshape(-1)])
        elif m == "glctx":
            glctx = g.pick(["cuda", 0, object()])
            g.invalid("glctx is no context")
        elif m == "grad_db":
            grad_db = g.pick([1, None, "yes"])
            g.invalid("grad_db is no bool")
    g.tri_verdict(tri, pos.shape[-2] if pos.dim() >= 2 else 0)
    if pos.dim() == 2 and (ranges is None or ranges.dtype != torch.int32 or ranges.dim() != 2 or ranges.shape[1] != 2):
        g.invalid(f"range mode with ranges {describe(ranges)}")
    elif pos.dim() == 2 and ranges.numel() and not big(ranges) and tri.dim() == 2 and (
            bool((ranges < 0).any()) or int((ranges[:, 0].long() + ranges[:, 1].long()).max()) > tri.shape[0]):
        g.invalid(f"ranges {ranges.tolist()} do not fit {tri.shape[0]} triangles")
    nf = tri.shape[0] if tri.dim() == 2 else nf
    args, kwargs = [glctx, pos, tri, resolution], {"ranges": ranges, "grad_db": grad_db}
    out = _call(g, "dr.rasterize", dr.rasterize, args, kwargs)
    if out is None:
        return
    rast, db = out
    nb = ranges.shape[0] if pos.dim() == 2 else pos.shape[0]
    shape = (nb, h, w, 4)
    check_shape(rast, shape, "rast", pos.dtype)
    check_shape(db, shape, "rast_db", pos.dtype)
    if finite:
        check_finite(rast, "rast")
        check_finite(db, "rast_db")
    ids = rast[..., 3]
    covered = ids > 0
    check(bool((ids >= 0).all() and (ids <= nf).all() and (ids == ids.round()).all()),
          f"rast ids outside [0, {nf}] or fractional")
    check(bool((rast[~covered] == 0).all()), "an empty pixel of rast is not all zeros")
    u, v, z = rast[..., 0][covered], rast[..., 1][covered], rast[..., 2][covered]
    eps = 1e-4
    check(bool(((u >= -eps) & (v >= -eps) & (u + v <= 1 + eps)).all()), "barycentrics outside the triangle")
    check(bool(((z >= -1 - eps) & (z <= 1 + eps)).all()), "z/w of a covered pixel outside [-1, 1]")
    if pos.dim() == 2:
        for i, (first, count) in enumerate(ranges.tolist()):
            img = ids[i][ids[i] > 0] - 1
            check(bool(((img >= first) & (img < first + count)).all()), f"image {i} shows a triangle not in its range")
    same_as_contiguous(g, "dr.rasterize", dr.rasterize, args, kwargs, (rast, db))
    if g.chance(0.6):
        leaf = _leaf(pos)
        wr, wd = _weights(rast, g), _weights(db, g)

        def loss():
            r, d = dr.rasterize(glctx, leaf, tri, resolution, ranges=ranges, grad_db=grad_db)
            return (r * wr).sum() + (d * wd).sum()

        _grads("dr.rasterize", g, loss, {"pos": leaf}, finite)



# ---------------------------------------------------------------------------------------------- interpolate
def _mesh_rast(g: Gen, dtype: torch.dtype):
    """A small instanced mesh and its rasterization (or a made-up rast): ``(pos, tri, rast, db, b, nv, nf)``."""
    b, nv, nf = g.int(1, 3), g.size(3, 16), g.size(1, 20)
    h, w = g.size(1, 24), g.size(1, 24)
    pos = g.clip_positions((b,), nv, dtype)
    tri = g.triangles(nv, nf)
    if g.chance(0.7):
        rast, db = dr.rasterize(None, pos, tri, (h, w))
    else:
        rast = g.hand_rast((b, h, w), nf, dtype)
        db = g.uniform((b, h, w, 4), -2, 2, dtype)
    return pos, tri, rast, db, b, nv, nf


def case_interpolate(g: Gen) -> None:
    dtype = g.float_dtype()
    pos, tri, rast, db, b, nv, nf = _mesh_rast(g, dtype)
    c = g.int(1, 5) if g.chance(0.95) else 0
    form = g.pick(["batched", "shared", "flat"])
    attr = g.uniform({"batched": (b, nv, c), "shared": (1, nv, c), "flat": (nv, c)}[form], -2, 2, dtype)
    diff: object = g.pick([None, "all", sorted(set(int(i) for i in g.rng.integers(0, max(c, 1), 2)))])
    if c == 0 and diff not in (None, "all"):
        diff = None
    rast_db: object = db if diff is not None or g.chance(0.5) else None
    finite = True
    for m in g.subset(["attr-values", "rast-values", "layout", "attr-dtype", "rast-dtype", "attr-shape",
                       "rast-shape", "tri-values", "tri-dtype", "diff", "db", "huge"]):
        if m == "attr-values":
            attr, finite = g.specials(attr), False
        elif m == "rast-values":
            rast, finite = g.corrupt_ids(rast), False
        elif m == "layout":
            attr, rast, rast_db = g.relayout_all(attr, rast, rast_db)
        elif m == "attr-dtype":
            attr = g.wrong_dtype(attr, "attr")
        elif m == "rast-dtype":
            rast = g.wrong_dtype(rast, "rast")
        elif m == "attr-shape":
            d = g.int(0, attr.dim() - 1)
            attr = g.resize(attr, d, g.pick([0, 2, attr.shape[d] + 1, 7]))
            g.doubtful(f"attr resized to {tuple(attr.shape)}")
        elif m == "rast-shape":
            d = g.int(0, 3)
            rast = g.resize(rast, d, g.pick([0, 1, rast.shape[d] + 1, 3, 5]))
            g.doubtful(f"rast resized to {tuple(rast.shape)}")
        elif m == "tri-values":
            tri = g.corrupt_index(tri, nv)
        elif m == "tri-dtype":
            tri = g.other_dtype(tri)
        elif m == "diff":
            diff = g.pick(["some", [c], [-1], [0, 0], [2 ** 40], "ALL", (0,), [0.5]])
            g.doubtful(f"diff_attrs {diff!r}")
        elif m == "db":
            rast_db = g.pick([None, rast[..., :2], rast.double() if dtype == torch.float32 else rast.float()])
            g.doubtful("rast_db missing or mismatched")
        elif m == "huge":
            attr, diff = g.huge(attr, attr.dim() - 1), None
            g.doubtful("attr with 2^40 channels")
    g.tri_verdict(tri, attr.shape[-2] if attr.dim() >= 2 else 0)
    args, kwargs = [attr, rast, tri], {"rast_db": rast_db, "diff_attrs": diff}
    out = _call(g, "dr.interpolate", dr.interpolate, args, kwargs)
    if out is None:
        return
    out, da = out
    nd = c if diff == "all" else len(diff or [])
    check_shape(out, rast.shape[:3] + (c,), "interpolate out", dtype)
    check_shape(da, rast.shape[:3] + (2 * nd,), "interpolate out_da", dtype)
    if finite:
        check_finite(out, "interpolate out")
        check_finite(da, "interpolate out_da")
        empty = rast[..., 3] == 0
        check(bool((out[empty] == 0).all() and (da[empty] == 0).all()), "interpolate: empty pixels are not zero")
    same_as_contiguous(g, "dr.interpolate", dr.interpolate, args, kwargs, (out, da))
    if g.chance(0.6):
        leaves = {"attr": _leaf(attr), "rast": _leaf(rast)}
        if isinstance(rast_db, torch.Tensor) and nd:
            leaves["rast_db"] = _leaf(rast_db)
        wo, wa = _weights(out, g), _weights(da, g)

        def loss():
            o, a = dr.interpolate(leaves["attr"], leaves["rast"], tri, rast_db=leaves.get("rast_db", rast_db),
                                  diff_attrs=diff)
            return (o * wo).sum() + (a * wa).sum()

        _grads("dr.interpolate", g, loss, leaves, finite)


# ------------------------------------------------------------------------------------------------ antialias
def case_antialias(g: Gen) -> None:
    dtype = g.float_dtype()
    b, nv, nf = g.int(1, 3), g.int(3, 16), g.int(1, 20)
    h, w, c = g.size(1, 24), g.size(1, 24), g.int(1, 4)
    range_mode = g.chance(0.2)
    pos = g.clip_positions(() if range_mode else (b,), nv, dtype)
    tri = g.triangles(nv, nf)
    ranges = g.ranges(b, nf) if range_mode else None
    rast, _ = dr.rasterize(None, pos, tri, (h, w), ranges=ranges)
    color = g.uniform((b, h, w, c), 0, 1, dtype)
    base = dr.antialias_construct_topology_hash(tri)
    topo: object = base if g.chance(0.5) else None
    boost: object = g.pick([1.0, 1.0, 0.5, 3.0, 0.0, -2.0])
    finite = True
    for m in g.subset(["color-values", "pos-values", "rast-values", "topo-values", "layout", "rast-float64",
                       "color-dtype", "pos-dtype", "topo-shape", "tri-values", "tri-dtype", "color-shape",
                       "rast-shape", "boost", "huge"]):
        if m == "color-values":
            color, finite = g.specials(color), False
        elif m == "pos-values":
            pos, finite = g.specials(pos, 0.2), False
        elif m == "rast-values":
            rast = g.corrupt_ids(rast)
            finite = False
        elif m == "topo-values":
            topo = g.corrupt_index(base, nv, 0.3) if g.chance(0.5) else g.ints(base.shape, -3, nv + 3)
        elif m == "layout":
            color, pos = g.relayout_all(color, pos)
            (rast,) = g.relayout_all(rast, value_changing=False)
        elif m == "rast-float64":
            rast = rast.double()
        elif m == "color-dtype":
            color = g.wrong_dtype(color, "color")
        elif m == "pos-dtype":
            pos = g.wrong_dtype(pos, "pos")
        elif m == "topo-shape":
            topo = g.pick([base[:-1], base[:, :2], base.long(), base.reshape(-1)])
            g.invalid("topology_hash of the wrong shape or dtype")
        elif m == "tri-values":
            tri = g.corrupt_index(tri, nv)
        elif m == "tri-dtype":
            tri = g.other_dtype(tri)
        elif m == "color-shape":  # any channel count >= 1 is fine, other sizes must match rast
            d = g.int(0, 3)
            color = g.resize(color, d, g.pick([0, color.shape[d] + 1]))
            if d < 3 or color.shape[3] == 0:
                g.invalid(f"color resized to {tuple(color.shape)}")
        elif m == "rast-shape":
            d = g.int(0, 3)
            rast = g.resize(rast, d, g.pick([0, rast.shape[d] + 1]))
            g.invalid(f"rast resized to {tuple(rast.shape)}")
        elif m == "boost":
            boost = g.pick([math.nan, math.inf, True, "1", None])
            g.invalid(f"pos_gradient_boost {boost!r}")
        elif m == "huge":
            color = g.huge(color, 3)
            g.doubtful("color with 2^40 channels")
    g.tri_verdict(tri, pos.shape[-2] if pos.dim() >= 2 else 0, faces=True)
    args = [color, rast, pos, tri]
    kwargs = {"topology_hash": topo, "pos_gradient_boost": boost}
    out = _call(g, "dr.antialias", dr.antialias, args, kwargs)
    if out is None:
        return
    check_shape(out, color.shape, "antialias out", color.dtype)
    if finite:
        check_finite(out, "antialias out")
        ids = rast[..., 3]
        same = torch.ones_like(ids, dtype=torch.bool)
        same[:, 1:] &= ids[:, 1:] == ids[:, :-1]
        same[:, :-1] &= ids[:, :-1] == ids[:, 1:]
        same[:, :, 1:] &= ids[:, :, 1:] == ids[:, :, :-1]
        same[:, :, :-1] &= ids[:, :, :-1] == ids[:, :, 1:]
        check(equal(out[same], color[same]), "antialias changed a pixel whose neighbours all show its triangle")
    same_as_contiguous(g, "dr.antialias", dr.antialias, args, kwargs, out)
    if g.chance(0.6):
        leaves = {"color": _leaf(color), "pos": _leaf(pos)}
        wo = _weights(out, g)

        def loss():
            return (dr.antialias(leaves["color"], rast, leaves["pos"], tri, **kwargs) * wo).sum()

        _grads("dr.antialias", g, loss, leaves, finite)


def case_topology_hash(g: Gen) -> None:
    nv, nf = g.int(1, 12), g.int(1, 40)
    tri = g.triangles(nv, nf)
    if g.chance(0.3):  # shared edges: a strip
        tri = torch.tensor([[i, i + 1, i + 2] for i in range(nf)], dtype=torch.int32) % max(nv, 1)
    for m in g.subset(["layout", "values", "dtype", "shape", "empty"]):
        if m == "layout":
            tri, _ = g.relayout(tri)
        elif m == "values":
            tri = g.corrupt_index(tri, nv)
        elif m == "dtype":
            tri = g.other_dtype(tri)
        elif m == "shape":
            tri = g.resize(tri, 1, g.pick([2, 4])) if g.chance(0.5) else g.reshape_dims(tri)
        elif m == "empty":
            tri = tri[:0]
    g.tri_verdict(tri, None, faces=True)
    topo = g.call("dr.antialias_construct_topology_hash", dr.antialias_construct_topology_hash, tri)
    check_shape(topo, (tri.shape[0], 3), "topology_hash", torch.int32)
    t, o = tri.tolist(), topo.tolist()
    for f in range(len(t)):
        for k in range(3):
            opp = o[f][k]
            if opp == -1:
                continue
            edge = {t[f][(k + 1) % 3], t[f][(k + 2) % 3]}
            check(any(gf != f and set(t[gf]) == edge | {opp} and len(set(t[gf])) == 3 for gf in range(len(t))),
                  f"topology_hash[{f}, {k}] = {opp}: no other triangle has edge {sorted(edge)} and that vertex")


# ------------------------------------------------------------------------------------------------ fragments
def _expected_face(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(id - 1 where the value is a plain id in [1, 2^24], mask of values that are no id at all: -1 expected)."""
    v = ids.double()
    none = ~torch.isfinite(v) | (v < 1)
    plain = ~none & (v <= 2 ** 24)
    return torch.where(plain, v.nan_to_num(0).floor() - 1, torch.zeros_like(v)).long(), none


def case_fragments(g: Gen) -> None:
    dtype = g.float_dtype()
    b, h, w, nf = g.int(1, 3), g.size(1, 16), g.size(1, 16), g.size(1, 30)
    rast = g.hand_rast((b, h, w), nf, dtype)
    fpm: object = None if g.chance(0.5) else g.int(1, 1000)
    for m in g.subset(["ids", "layout", "dtype", "shape", "fpm"]):
        if m == "ids":
            rast = g.corrupt_ids(rast, 0.3)
        elif m == "layout":
            rast, _ = g.relayout(rast)
        elif m == "dtype":
            rast = g.other_dtype(rast)
            g.doubtful(f"rast is {rast.dtype}")
        elif m == "shape":
            rast = g.reshape_dims(rast) if g.chance(0.5) else g.resize(rast, 3, g.pick([3, 5]))
            g.invalid(f"rast has shape {tuple(rast.shape)}")
        elif m == "fpm":
            fpm = g.pick([0, -1, 2.5, "3", 2 ** 40])
            g.doubtful(f"faces_per_mesh {fpm!r}")
    fr = g.call("dr.fragments", dr.fragments, rast, fpm)
    if g.expect != "ok":
        return
    check_shape(fr.pix_to_face, (b, h, w, 1), "pix_to_face", torch.int64)
    check_shape(fr.zbuf, (b, h, w, 1), "zbuf")
    check_shape(fr.bary_coords, (b, h, w, 1, 3), "bary_coords")
    check(fr.dists is None, "dists is not None")
    face = fr.pix_to_face[..., 0].flip(1)
    want, none = _expected_face(rast[..., 3])
    offset = torch.arange(b).view(-1, 1, 1) * (fpm or 0)
    bad = none & (face != -1)
    check(not bool(bad.any()), f"pix_to_face is {face[bad][:4].tolist()}, not -1, for ids "
                               f"{rast[..., 3][bad][:4].tolist()} that name no triangle")
    plain = ~none & (rast[..., 3].double() <= 2 ** 24)
    check(bool((face[plain] == (want + offset)[plain]).all()), "pix_to_face differs from id - 1 (+ offset)")
    check(bool((fr.zbuf[..., 0].flip(1)[none] == -1).all()), "zbuf not -1 on an empty pixel")


# ------------------------------------------------------------------------------------------- neighbour_min
def case_neighbour_min(g: Gen) -> None:
    dtype = g.float_dtype()
    b, c, h, w = g.int(1, 2), g.int(1, 4), g.size(1, 24), g.size(1, 24)
    k: object = g.pick([1, 3, 3, 5, 7])
    k = min(k, (min(h, w) - 1) // 2 * 2 + 1)
    target, render = g.uniform((b, c, h, w), 0, 1, dtype), g.uniform((b, c, h, w), 0, 1, dtype)
    region: object = g.pick([None, "bool", "float", "bool4"])
    if region is not None:
        r = torch.from_numpy(g.rng.random((b, h, w)) < g.pick([0.1, 0.5, 0.9]))
        region = {"bool": r, "float": r.to(dtype) * 0.8 + 0.1, "bool4": r[:, None]}[region]
    finite = True
    for m in g.subset(["values", "layout", "dtype", "shape", "k", "region", "channels", "batch", "huge", "loss"]):
        if m == "values":
            target, finite = g.specials(target), False
            if g.chance(0.5):
                render = g.specials(render)
        elif m == "layout":
            target, render = g.relayout_all(target, render)
        elif m == "dtype":
            render = g.wrong_dtype(render, "render")
        elif m == "shape":
            d = g.int(0, 3)
            s = render.shape[d]
            render = g.resize(render, d, s + 1 if s == 0 or g.chance(0.5) else s - 1)
            g.invalid(f"render {tuple(render.shape)} differs from target {tuple(target.shape)}")
        elif m == "k":
            k = g.pick([0, 2, -1, 2 * max(h, w) + 1, True, 3.0, 2 ** 40 + 1])
            g.invalid(f"k = {k!r}")
        elif m == "region":
            region = g.pick([torch.ones(b, h + 1, w, dtype=torch.bool), torch.ones(b, h, w, dtype=torch.int32),
                             torch.ones(b, 2, h, w, dtype=torch.bool)])
            g.invalid(f"region {region.dtype} {tuple(region.shape)}")
        elif m == "channels":
            target, render = target[:, :0], render[:, :0]
            g.invalid("no channels")
        elif m == "batch":
            target, render = target[:0], render[:0]
            g.doubtful("empty batch")
        elif m == "huge":
            target = g.huge(target, 0)
            render = target.expand(target.shape)
            g.doubtful("2^40+ bytes of images")
    args = [target, render]
    kwargs = {"k": k, "region": region}
    out = _call(g, "ops.neighbour_min", ops.neighbour_min, args, kwargs)
    if out is None:
        return
    d2, idx = out
    check_shape(d2, (b, h, w), "d2", dtype)
    check_shape(idx, (b, h, w), "idx", torch.int32)
    kk = int(k)
    check(bool(((idx >= -1) & (idx < kk * kk)).all()), f"idx outside [-1, {kk * kk})")
    r = kk // 2
    dy, dx = ops.decode_offset(idx, kk)
    ys = torch.arange(h).view(1, -1, 1) + dy
    xs = torch.arange(w).view(1, 1, -1) + dx
    check(bool(((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).all()), "idx points outside the image")
    if finite:
        check_finite(d2, "d2")
        check(bool((d2 >= 0).all()), "negative d2")
        if region is None:
            centre = ((target - render) ** 2).sum(1)
            check(bool((idx >= 0).all()), "idx -1 without a region")
            check(bool((d2 <= centre * (1 + 1e-6) + 1e-12).all()), "d2 above the centre pixel's distance")
        else:
            reg = region[:, 0] if region.dim() == 4 else region
            reg = reg if reg.dtype == torch.bool else reg > 0.5
            any_cand = torch.nn.functional.max_pool2d(reg[:, None].double(), kk, 1, r)[:, 0] > 0
            check(equal(idx >= 0, any_cand), "idx == -1 exactly where the window holds no region pixel: violated")
            check(bool((d2[~any_cand] == 0).all()), "d2 not 0 without candidates")
            bi = torch.arange(b).view(-1, 1, 1).expand(b, h, w)
            ok = idx >= 0
            check(bool(reg[bi[ok], ys.expand(b, h, w)[ok], xs.expand(b, h, w)[ok]].all()),
                  "idx points at a pixel outside the region")
    same_as_contiguous(g, "ops.neighbour_min", ops.neighbour_min, args, kwargs, (d2, idx))
    if g.chance(0.6):
        leaves = {"target": _leaf(target), "render": _leaf(render)}
        wd = _weights(d2, g)

        def loss():
            return (ops.neighbour_min(leaves["target"], leaves["render"], **kwargs)[0] * wd).sum()

        _grads("ops.neighbour_min", g, loss, leaves, finite)


# ---------------------------------------------------------------------------------------------- sh_shade
def case_sh_shade(g: Gen) -> None:
    from occrecon.ops import reference

    dtype = g.float_dtype()
    b = g.int(1, 3)
    inner = tuple(g.int(0 if g.chance(0.1) else 1, 12) for _ in range(g.int(1, 2)))
    n = g.uniform((b,) + inner + (3,), -1, 1, dtype)
    normals = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    albedo = g.uniform(g.pick([(b,) + inner + (3,), (1,) + inner + (3,), inner + (3,)]), 0, 1, dtype)
    gamma = g.uniform(g.pick([(b, 9, 3), (b, 27)]), -1, 1, dtype)
    finite = True
    for m in g.subset(["values", "layout", "dtype", "albedo", "gamma", "normals", "batch", "huge"]):
        if m == "values":
            normals, finite = g.specials(normals), False
            gamma = g.specials(gamma) if g.chance(0.5) else gamma
        elif m == "layout":
            normals, albedo, gamma = g.relayout_all(normals, albedo, gamma)
        elif m == "dtype":
            which = g.pick(["normals", "albedo", "gamma"])
            t = {"normals": normals, "albedo": albedo, "gamma": gamma}[which]
            t = g.other_dtype(t)
            normals, albedo, gamma = (t if which == nm else v for nm, v in
                                      (("normals", normals), ("albedo", albedo), ("gamma", gamma)))
        elif m == "albedo":
            albedo = g.resize(albedo, albedo.dim() - 2, albedo.shape[-2] + 1)
        elif m == "gamma":
            gamma = g.pick([gamma[:1] if b > 1 else gamma[:, :-1], gamma.reshape(-1), torch.zeros(b, 9, 4, dtype=dtype)])
        elif m == "normals":
            normals = g.resize(normals, normals.dim() - 1, g.pick([2, 4]))
        elif m == "batch":
            normals, gamma = normals[:0], gamma[:0]
            albedo = albedo[:0] if albedo.dim() == normals.dim() and albedo.shape[0] == b else albedo
        elif m == "huge":
            normals = g.huge(normals, 1)
    # the verdict from the final arguments (occrecon.ops.sh_shade's rules)
    if len({normals.dtype, albedo.dtype, gamma.dtype}) > 1 or normals.dtype not in (torch.float32, torch.float64):
        g.invalid(f"dtypes {normals.dtype}, {albedo.dtype}, {gamma.dtype}")
    if normals.dim() < 2 or normals.shape[-1] != 3:
        g.invalid(f"normals {tuple(normals.shape)}")
    else:
        nb, inner = normals.shape[0], tuple(normals.shape[1:-1])
        if tuple(albedo.shape) not in (tuple(normals.shape), (1,) + inner + (3,), inner + (3,)):
            g.invalid(f"albedo {tuple(albedo.shape)} for normals {tuple(normals.shape)}")
        if tuple(gamma.shape) not in ((nb, 9, 3), (nb, 27)):
            g.invalid(f"gamma {tuple(gamma.shape)} for batch {nb}")
        if nb == 0 or 0 in inner:
            g.doubtful("empty input")
    args = [normals, albedo, gamma]
    out = _call(g, "ops.sh_shade", ops.sh_shade, args, {})
    if out is None:
        return
    check_shape(out, normals.shape, "sh_shade out", dtype)
    if finite:
        check_finite(out, "sh_shade out")
        ref = reference.sh_shade(normals.double(), albedo.double(), gamma.double())
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        check(bool(torch.allclose(out.double(), ref, rtol=tol, atol=tol)), "sh_shade differs from the reference")
    same_as_contiguous(g, "ops.sh_shade", ops.sh_shade, args, {}, out)
    if g.chance(0.6):
        leaves = {"normals": _leaf(normals), "albedo": _leaf(albedo), "gamma": _leaf(gamma)}
        wo = _weights(out, g)

        def loss():
            return (ops.sh_shade(leaves["normals"], leaves["albedo"], leaves["gamma"]) * wo).sum()

        _grads("ops.sh_shade", g, loss, leaves, finite)


# ----------------------------------------------------------------------------------------- vertex_normals
def case_vertex_normals(g: Gen) -> None:
    dtype = g.float_dtype()
    b, nv, nf = g.int(1, 3), g.size(1, 20), g.size(0, 30)
    batched = g.chance(0.7)
    vertices = g.uniform((b, nv, 3) if batched else (nv, 3), -1, 1, dtype)
    tri = g.triangles(nv, nf).to(g.pick([torch.int32, torch.int32, torch.int64, torch.int16]))
    eps: object = g.pick([1e-12, 1e-12, 1e-6, 1.0])
    finite = True
    for m in g.subset(["values", "layout", "tri-values", "tri-dtype", "tri-shape", "eps", "vertices", "huge"]):
        if m == "values":
            vertices, finite = g.specials(vertices), False
        elif m == "layout":
            vertices, tri = g.relayout_all(vertices, tri)
        elif m == "tri-values":
            tri = g.corrupt_index(tri, nv)
        elif m == "tri-dtype":
            tri = tri.to(g.pick([torch.float32, torch.bool, torch.float64, torch.complex64]))
        elif m == "tri-shape":
            tri = g.resize(tri, 1, g.pick([2, 4])) if g.chance(0.5) else g.reshape_dims(tri)
        elif m == "eps":
            eps = g.pick([0.0, -1.0, math.nan, math.inf, True, "1e-6"])
            g.invalid(f"eps = {eps!r}")
        elif m == "vertices":
            vertices = g.resize(vertices, vertices.dim() - 1, g.pick([2, 4])) if g.chance(0.5) else \
                vertices.unsqueeze(0).unsqueeze(0)
            g.invalid(f"vertices have shape {tuple(vertices.shape)}")
        elif m == "huge":
            vertices = g.huge(vertices, 0) if vertices.dim() == 3 else vertices.expand(2 ** 36, *vertices.shape)
            g.doubtful("vertices of 2^40+ bytes")
    g.tri_verdict(tri, vertices.shape[-2] if vertices.dim() >= 2 else 0, any_int=True)
    args = [vertices, tri]
    kwargs = {"eps": eps}
    out = _call(g, "ops.vertex_normals", ops.vertex_normals, args, kwargs)
    if out is None:
        return
    check_shape(out, vertices.shape, "vertex_normals out", dtype)
    if finite:
        check_finite(out, "vertex_normals out")
        check(bool((out.norm(dim=-1) <= 1 + 1e-5).all()), "a vertex normal longer than 1")
        unused = torch.ones(nv, dtype=torch.bool)
        unused[tri.long().reshape(-1)] = False
        check(bool((out[..., unused, :] == 0).all()), "a vertex in no triangle has a non-zero normal")
    same_as_contiguous(g, "ops.vertex_normals", ops.vertex_normals, args, kwargs, out)
    if g.chance(0.6):
        leaves = {"vertices": _leaf(vertices)}
        wo = _weights(out, g)

        def loss():
            return (ops.vertex_normals(leaves["vertices"], tri, eps=eps) * wo).sum()

        _grads("ops.vertex_normals", g, loss, leaves, finite)


# ------------------------------------------------------------------------------------ tri written in place
def case_tri_mutation(g: Gen) -> None:
    """A first call caches tri's index range; then tri is written in place, through routes that do or do not
    bump its version counter, and the op is called again: it must refuse the new indices or not read with them
    (issue 12, item 1: the range cache must never decide memory safety)."""
    target = g.pick(["rasterize", "interpolate", "antialias", "vertex_normals", "direct.rasterize",
                     "direct.interpolate", "direct.interpolate_backward", "direct.rasterize_backward",
                     "direct.vertex_normals", "direct.antialias"])
    route = g.pick(["data", "numpy", "from_numpy", "inplace", "detach"])
    b, nv, nf, h, w = g.int(1, 2), g.int(3, 12), g.int(1, 12), g.int(1, 16), g.int(1, 16)
    pos = g.clip_positions((b,), nv, torch.float32)
    array = g.triangles(nv, nf).numpy().copy()
    tri = torch.from_numpy(array) if route == "from_numpy" else torch.from_numpy(array.copy())
    rast, db = dr.rasterize(None, pos, tri, (h, w))
    attr = g.uniform((b, nv, 3), -1, 1)
    verts = pos[..., :3].contiguous()
    color = g.uniform((b, h, w, 3), 0, 1)
    topo = dr.antialias_construct_topology_hash(tri)
    calls = {
        "rasterize": lambda: dr.rasterize(None, pos, tri, (h, w)),
        "interpolate": lambda: dr.interpolate(attr, rast, tri, rast_db=db, diff_attrs="all"),
        "antialias": lambda: dr.antialias(color, rast, pos, tri, topology_hash=topo),
        "vertex_normals": lambda: ops.vertex_normals(verts, tri),
        "direct.rasterize": lambda: torch.ops.occrecon.rasterize(pos, tri, h, w, None, True),
        "direct.interpolate": lambda: torch.ops.occrecon.interpolate(attr, rast, tri, db, [0, 2]),
        "direct.interpolate_backward": lambda: torch.ops.occrecon.interpolate_backward(
            attr, rast, tri, db, [1], torch.ones(b, h, w, 3), torch.ones(b, h, w, 2)),
        "direct.rasterize_backward": lambda: torch.ops.occrecon.rasterize_backward(pos, tri, rast,
                                                                                   torch.ones_like(rast), db),
        "direct.vertex_normals": lambda: torch.ops.occrecon.vertex_normals(verts, tri, 1e-12),
        "direct.antialias": lambda: torch.ops.occrecon.antialias(color, rast, pos, tri, topo, 1.0),
    }
    g.call(f"{target} (first call)", calls[target])
    f, k = g.int(0, nf - 1), g.int(0, 2)
    bad = g.pick([10 ** 7, -1, nv, 2 ** 31 - 1, -(2 ** 31), nv + 1000])
    g.note(f"tri[{f}, {k}] = {bad} via {route}")
    if route == "data":
        tri.data[f, k] = bad
    elif route == "numpy":
        tri.numpy()[f, k] = bad
    elif route == "from_numpy":
        array[f, k] = bad
    elif route == "inplace":
        tri[f, k] = bad
    else:
        tri.detach()[f, k] = bad
    checked = target != "direct.antialias"  # the antialias kernel skips bad indices, it does not refuse them
    if route in ("inplace", "detach") and checked:  # detach() shares the version counter: the write is seen
        g.invalid("tri written in place (version bumped) with an index out of range")
    else:
        g.doubtful("tri written behind the version counter: refuse, or never read with the new index")
    out = g.call(f"{target} (after the write)", calls[target])
    for i, t in enumerate(out if isinstance(out, tuple) else (out,)):
        if isinstance(t, torch.Tensor) and t.is_floating_point() and target != "direct.rasterize_backward":
            check_finite(t, f"{target} output {i} after the write")


REGISTRY = {
    "rasterize": case_rasterize,
    "interpolate": case_interpolate,
    "antialias": case_antialias,
    "antialias_construct_topology_hash": case_topology_hash,
    "fragments": case_fragments,
    "neighbour_min": case_neighbour_min,
    "sh_shade": case_sh_shade,
    "vertex_normals": case_vertex_normals,
    "tri_mutation": case_tri_mutation,
    **{f"direct.{name}": fn for name, fn in direct.CASES.items()},
}
