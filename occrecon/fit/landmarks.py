"""Robust landmark fit: pose, identity and expression of a morphable model from 68 detected 2D landmarks.

Only the model's landmark vertices are evaluated (never a render): the 68 rows of the mean, identity and
expression bases, a rigid pose and the pinhole projection of :class:`~occrecon.render.PerspectiveCamera`.

1. **Pose initialisation, closed form.** A weighted least-squares affine camera ``[u − cx, cy − v] ≈ A [X; 1]``
   from the mean shape's landmarks X (scaled orthography), its 2 × 3 part projected onto the nearest pair of
   orthonormal rows (an SVD), the third row their cross product; the scale gives the depth ``d = f / s``. No
   iterative PnP is needed, and a degenerate target (fewer than ``min_landmarks`` usable points, or points
   spread over less than a pixel) flags the face instead of failing the batch.
2. **Levenberg–Marquardt** on ``(angles, translation, θ_id, θ_exp)`` with analytic Jacobians, batched over
   faces (one ``(P, P)`` Cholesky solve per face and iteration, no Python loop over faces). Residuals are in
   units of the target face's size s (see :mod:`occrecon.fit.config`), weighted per landmark and reweighted by
   a robust function (Geman–McClure by default, annealed from a wide to the final scale). Priors: Gaussian on
   identity; on expression Gaussian plus the model's own range — blendshape weights (ICT, SFM) are kept in
   ``model.exp_bounds`` by projection after every step. A step is kept only if it lowers the face's cost (the
   damping adapts per face).

Missing landmarks — NaN targets, ``valid`` False, or landmarks the model does not map (``model.landmarks`` −1) —
are left out of every sum. **Jaw contour:** ICT maps the 17 contour points to fixed jaw vertices, which match
the image silhouette near frontal poses and drift off it as the face turns (hence their lower default weight);
SFM maps only the chin (8), so its other 16 contour points are simply absent; the fit says nothing about the
face outline there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..render.camera import PerspectiveCamera, euler_rotation
from ..render.face import DEFAULT_DISTANCE
from .config import LANDMARK_FIT_WEIGHTS_68, LandmarkFitConfig

__all__ = ["LandmarkFit", "fit_landmarks", "face_scale", "pose_from_rotation", "initial_pose",
           "project_landmarks", "MIN_SPREAD_PX"]

#: Target landmarks spread over less than this (root-mean-square, pixels) are degenerate: the face is flagged.
MIN_SPREAD_PX = 1.0


@dataclass
class LandmarkFit:
    """Result of :func:`fit_landmarks` for B faces.

    Attributes:
        theta: ``(B, P)`` θ in ``model.layout``: angles, translation, identity and expression fitted; albedo and
            light copied from ``init`` (zeros without one).
        landmarks: ``(B, 68, 2)`` projected model landmarks (pixels, x right, y down), NaN where unmapped.
        error: ``(B,)`` mean distance (pixels) between the projected and the target landmarks over the usable
            ones (NaN for a failed face).
        used: ``(B, 68)`` bool, the landmarks that entered the fit.
        weights: ``(B, 68)`` final robust weights in [0, 1] (≈ 0 for landmarks the fit treats as outliers).
        scale: ``(B,)`` the target face size s (pixels).
        cost: ``(B, iterations + 1)`` the robust cost after the initialisation and each iteration.
        converged: ``(B,)`` bool, the cost's relative change fell below the tolerance.
        failed: ``(B,)`` bool, too few usable landmarks or a degenerate target: θ is ``init`` (or zeros).
    """

    theta: torch.Tensor
    landmarks: torch.Tensor
    error: torch.Tensor
    used: torch.Tensor
    weights: torch.Tensor
    scale: torch.Tensor
    cost: torch.Tensor
    converged: torch.Tensor
    failed: torch.Tensor


def face_scale(points: torch.Tensor, usable: torch.Tensor) -> torch.Tensor:
    """``(B,)`` root-mean-square distance of the usable points ``(B, N, 2)`` from their centroid (0 if none)."""
    w = usable.to(points.dtype)
    n = w.sum(1).clamp_min(1.0)
    p = torch.where(usable[..., None], points, torch.zeros_like(points))
    centre = p.sum(1) / n[:, None]
    d2 = ((p - centre[:, None]) ** 2).sum(-1) * w
    return (d2.sum(1) / n).sqrt()


def pose_from_rotation(rot: torch.Tensor) -> torch.Tensor:
    """Euler angles ``(..., 3)`` = (pitch, yaw, roll) of rotation matrices ``(..., 3, 3)`` in the camera's
    convention ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (inverse of :func:`~occrecon.render.euler_rotation`;
    yaw in [−π/2, π/2])."""
    yaw = torch.asin((-rot[..., 2, 0]).clamp(-1.0, 1.0))
    pitch = torch.atan2(rot[..., 2, 1], rot[..., 2, 2])
    roll = torch.atan2(rot[..., 1, 0], rot[..., 0, 0])
    return torch.stack([pitch, yaw, roll], -1)


def _landmark_bases(model, dtype, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean ``(68, 3)``, identity ``(K_id, 68, 3)`` and expression ``(K_exp, 68, 3)`` rows of the landmark
    vertices (zeros where unmapped) and the ``(68,)`` bool mapping mask."""
    lm = model.landmarks.to(device)
    if lm.shape != (68,):
        raise ValueError(f"model: expected 68 landmark indices, got shape {tuple(lm.shape)}")
    mapped = lm >= 0
    idx = lm.clamp_min(0)
    keep = mapped.to(dtype)[:, None]
    mean = model.mean.to(device=device, dtype=dtype)[idx] * keep
    id_b = model.id_basis.to(device=device, dtype=dtype)[:, idx] * keep
    exp_b = model.exp_basis.to(device=device, dtype=dtype)[:, idx] * keep
    return mean, id_b, exp_b, mapped


def _camera_tuple(camera: PerspectiveCamera) -> tuple[float, float, float]:
    if not isinstance(camera, PerspectiveCamera):
        raise TypeError(f"camera: expected a PerspectiveCamera, got {type(camera).__name__}")
    cx, cy = camera.principal_point
    return float(camera.focal), float(cx), float(cy)


def project_landmarks(points_cam: torch.Tensor, camera: PerspectiveCamera) -> torch.Tensor:
    """Camera-space points ``(..., 3)`` to pixels ``(..., 2)`` (as :meth:`PerspectiveCamera.project`)."""
    return camera.project(points_cam)


def initial_pose(model_points: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                 camera: PerspectiveCamera, distance: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form pose from 2D–3D correspondences (scaled orthography, see the module docstring).

    Args:
        model_points: ``(B, N, 3)`` model-space points (e.g. the mean shape's landmarks).
        targets: ``(B, N, 2)`` pixel coordinates (NaN allowed where ``weights`` is 0).
        weights: ``(B, N)`` non-negative weights (0 = unused).
        camera: the pinhole camera; distance: the renderer's camera distance (θ's ``trans`` is relative to it).

    Returns:
        ``(angles (B, 3), trans (B, 3), ok (B,) bool)``: θ's angle and translation groups; ``ok`` is False where
        the weighted system is degenerate (then angles and translation are 0).
    """
    f, cx, cy = _camera_tuple(camera)
    dt = model_points.dtype
    w = weights.to(dt)
    tgt = torch.nan_to_num(targets, nan=0.0)
    y = torch.stack([tgt[..., 0] - cx, cy - tgt[..., 1]], -1)  # camera-oriented image coordinates (y up)
    xh = torch.cat([model_points, torch.ones_like(model_points[..., :1])], -1)  # (B, N, 4)
    m = torch.einsum("bn,bni,bnj->bij", w, xh, xh)
    rhs = torch.einsum("bn,bni,bnj->bij", w, xh, y)  # (B, 4, 2)
    eye = torch.eye(4, dtype=dt, device=m.device)
    scale_m = m.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-30)[:, None, None]
    a = torch.linalg.solve(m + 1e-9 * scale_m * eye, rhs).transpose(1, 2)  # (B, 2, 4)
    lin = a[..., :3]
    u, s, vh = torch.linalg.svd(lin, full_matrices=False)  # (B,2,2), (B,2), (B,2,3)
    rows = u @ vh  # nearest matrix with orthonormal rows
    r3 = torch.linalg.cross(rows[:, 0], rows[:, 1])
    rot = torch.cat([rows, r3[:, None]], 1)
    sc = s.mean(-1)
    ok = torch.isfinite(sc) & (sc > 1e-12) & torch.isfinite(rot).all((1, 2))
    sc_safe = torch.where(ok, sc, torch.ones_like(sc))
    depth = f / sc_safe
    txy = a[..., 3] / sc_safe[:, None]
    trans = torch.stack([txy[:, 0], txy[:, 1], distance - depth], -1)
    angles = pose_from_rotation(torch.where(ok[:, None, None], rot, torch.eye(3, dtype=dt, device=m.device)))
    zero = torch.zeros_like(angles)
    return torch.where(ok[:, None], angles, zero), torch.where(ok[:, None], trans, zero), ok


def _rotation_and_derivatives(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``R (B, 3, 3)`` and ``dR/dangle (B, 3, 3, 3)`` (last index: pitch, yaw, roll), R = Rz Ry Rx."""
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()

    def mat(*e):
        return torch.stack(e, -1).unflatten(-1, (3, 3))

    rx = mat(one, zero, zero, zero, cx, -sx, zero, sx, cx)
    ry = mat(cy, zero, sy, zero, one, zero, -sy, zero, cy)
    rz = mat(cz, -sz, zero, sz, cz, zero, zero, zero, one)
    drx = mat(zero, zero, zero, zero, -sx, -cx, zero, cx, -sx)
    dry = mat(-sy, zero, cy, zero, zero, zero, -cy, zero, -sy)
    drz = mat(-sz, -cz, zero, cz, -sz, zero, zero, zero, zero)
    rzy = rz @ ry
    rot = rzy @ rx
    d = torch.stack([rzy @ drx, rz @ dry @ rx, drz @ ry @ rx], -1)
    return rot, d


def _robust_weights(e2: torch.Tensor, c: float, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """IRLS weight and cost ρ for squared residual lengths ``e2`` at scale ``c`` (face-size units)."""
    c2 = c * c
    if kind == "geman-mcclure":
        q = c2 / (c2 + e2)
        return q * q, e2 * q  # ρ = c² e² / (c² + e²); ψ/e ∝ (c² / (c² + e²))²
    if kind == "huber":
        e = e2.clamp_min(0).sqrt()
        inside = e <= c
        w = torch.where(inside, torch.ones_like(e), c / e.clamp_min(1e-30))
        rho = torch.where(inside, e2, 2 * c * e - c2)
        return w, rho
    return torch.ones_like(e2), e2


class _Problem:
    """The batched landmark least-squares problem: shapes, priors, and cost/Jacobian evaluation."""

    def __init__(self, model, camera, distance, targets, base_weights, used, cfg: LandmarkFitConfig, dtype):
        self.f, self.cx, self.cy = _camera_tuple(camera)
        self.distance = float(distance)
        dev = targets.device
        self.mean, id_b, exp_b, _ = _landmark_bases(model, dtype, dev)
        n_id = model.n_id if cfg.id_modes is None else min(cfg.id_modes, model.n_id)
        self.n_id = n_id if cfg.fit_identity else 0
        self.n_exp = model.n_exp if cfg.fit_expression else 0
        self.id_b, self.exp_b = id_b[: self.n_id], exp_b[: self.n_exp]
        self.targets = torch.nan_to_num(targets.to(dtype), nan=0.0)
        self.used = used
        self.base_w = base_weights.to(dtype) * used.to(dtype)
        self.scale = face_scale(targets.to(dtype), used).clamp_min(1e-6)
        self.cfg = cfg
        bounds = getattr(model, "exp_bounds", None)
        self.bounds = bounds if self.n_exp else None
        self.n_params = 6 + self.n_id + self.n_exp
        prior = torch.zeros(self.n_params, dtype=dtype, device=dev)
        prior[6:6 + self.n_id] = cfg.id_prior
        prior[6 + self.n_id:] = cfg.exp_prior
        self.prior = prior

    def shape(self, p: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """Model-space landmark points ``(B, 68, 3)``: fitted coefficients plus the fixed rest of θ."""
        pts = self.mean + fixed
        if self.n_id:
            pts = pts + torch.einsum("bk,kni->bni", p[:, 6:6 + self.n_id], self.id_b)
        if self.n_exp:
            pts = pts + torch.einsum("bk,kni->bni", p[:, 6 + self.n_id:], self.exp_b)
        return pts

    def camera_points(self, p, fixed):
        rot = euler_rotation(p[:, :3])
        t = p[:, 3:6] - p.new_tensor([0.0, 0.0, self.distance])
        return self.shape(p, fixed) @ rot.transpose(1, 2) + t[:, None]

    def residuals(self, p, fixed) -> tuple[torch.Tensor, torch.Tensor]:
        """Residuals ``(B, 68, 2)`` in face-size units and the camera-space points."""
        vc = self.camera_points(p, fixed)
        d = (-vc[..., 2]).clamp_min(1e-9)
        u = self.cx + self.f * vc[..., 0] / d
        v = self.cy - self.f * vc[..., 1] / d
        r = (torch.stack([u, v], -1) - self.targets) / self.scale[:, None, None]
        return r, vc

    def cost(self, p, fixed, c) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Robust cost ``(B,)``, IRLS weights ``(B, 68)`` and residuals."""
        r, _ = self.residuals(p, fixed)
        e2 = torch.where(self.used, (r * r).sum(-1), torch.zeros_like(r[..., 0]))
        w, rho = _robust_weights(e2, c, self.cfg.robust)
        data = (self.base_w * rho).sum(1)
        return data + (self.prior * p * p).sum(1), w, r

    def jacobian(self, p, fixed) -> torch.Tensor:
        """``(B, 68, 2, P)`` derivative of the residuals by the parameters."""
        shape = self.shape(p, fixed)
        rot, drot = _rotation_and_derivatives(p[:, :3])
        t = p[:, 3:6] - p.new_tensor([0.0, 0.0, self.distance])
        vc = shape @ rot.transpose(1, 2) + t[:, None]
        x, y, z = vc.unbind(-1)
        d = (-z).clamp_min(1e-9)
        s = self.scale[:, None]
        zero = torch.zeros_like(x)
        # d(u, v)/d(x, y, z), divided by the face size
        du = torch.stack([self.f / d, zero, self.f * x / d ** 2], -1) / s[..., None]
        dv = torch.stack([zero, -self.f / d, -self.f * y / d ** 2], -1) / s[..., None]
        proj = torch.stack([du, dv], -2)  # (B, 68, 2, 3)
        b = p.shape[0]
        d_angles = torch.einsum("bija,bnj->bnia", drot, shape)  # (B, 68, 3, 3)
        blocks = [proj @ d_angles, proj]  # angles, translation (d vc / d t = I)
        if self.n_id or self.n_exp:
            # d r / d coefficient k = proj · R · basis_k: one batched product per landmark n
            pr = (proj @ rot[:, None]).permute(1, 0, 2, 3).reshape(68, b * 2, 3)  # (68, B·2, 3)
            for basis in (self.id_b, self.exp_b):
                if basis.shape[0]:
                    jk = torch.bmm(pr, basis.permute(1, 2, 0))  # (68, B·2, K)
                    blocks.append(jk.reshape(68, b, 2, -1).permute(1, 0, 2, 3))
        return torch.cat(blocks, -1)

    def active_bounds(self, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor | None:
        """``(B, P)`` bool: expression coefficients at a bound whose gradient points out of the range."""
        if self.bounds is None:
            return None
        lo, hi = self.bounds
        e, ge = p[:, 6 + self.n_id:], g[:, 6 + self.n_id:]
        act = ((e <= lo + 1e-6) & (ge > 0)) | ((e >= hi - 1e-6) & (ge < 0))
        return torch.cat([torch.zeros_like(p[:, :6 + self.n_id], dtype=torch.bool), act], 1)

    def project_bounds(self, p: torch.Tensor) -> torch.Tensor:
        if self.bounds is None:
            return p
        lo, hi = self.bounds
        e = p[:, 6 + self.n_id:].clamp(lo, hi)
        return torch.cat([p[:, :6 + self.n_id], e], 1)


def _check_landmark_args(model, landmarks, weights, valid, init) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(landmarks, torch.Tensor):
        raise TypeError(f"landmarks: expected a torch.Tensor, got {type(landmarks).__name__}")
    if landmarks.dim() != 3 or tuple(landmarks.shape[1:]) != (68, 2):
        raise ValueError(f"landmarks: expected shape (B, 68, 2), got {tuple(landmarks.shape)}")
    if not landmarks.is_floating_point():
        raise TypeError(f"landmarks: expected a floating dtype, got {landmarks.dtype}")
    b = landmarks.shape[0]
    if b == 0:
        raise ValueError("landmarks: empty batch")
    dev, dt = landmarks.device, model.mean.dtype
    if weights is None:
        w = torch.tensor(LANDMARK_FIT_WEIGHTS_68, dtype=dt, device=dev).expand(b, 68)
    else:
        if not isinstance(weights, torch.Tensor):
            raise TypeError(f"weights: expected a torch.Tensor, got {type(weights).__name__}")
        if tuple(weights.shape) not in ((68,), (b, 68)):
            raise ValueError(f"weights: expected shape (68,) or ({b}, 68), got {tuple(weights.shape)}")
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError("weights: must be finite and non-negative")
        w = weights.to(device=dev, dtype=dt).expand(b, 68)
    usable = torch.isfinite(landmarks).all(-1) & (model.landmarks.to(dev) >= 0)[None] & (w > 0)
    if valid is not None:
        if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool or tuple(valid.shape) != (b, 68):
            raise ValueError(f"valid: expected a bool tensor of shape ({b}, 68), got "
                             f"{getattr(valid, 'dtype', type(valid))} {tuple(getattr(valid, 'shape', ()))}")
        usable = usable & valid.to(dev)
    if init is not None:
        if not isinstance(init, torch.Tensor) or tuple(init.shape) != (b, model.layout.size):
            raise ValueError(f"init: expected a ({b}, {model.layout.size}) tensor for {model.layout!r}, got "
                             f"{tuple(getattr(init, 'shape', ()))}")
        if not bool(torch.isfinite(init).all()):
            raise ValueError("init: contains NaN or Inf values")
    return landmarks.to(dt), w, usable


def fit_landmarks(model, camera: PerspectiveCamera, landmarks: torch.Tensor, *, weights: torch.Tensor | None = None,
                  valid: torch.Tensor | None = None, init: torch.Tensor | None = None,
                  config: LandmarkFitConfig | None = None, distance: float | None = None) -> LandmarkFit:
    """Fit pose, identity and expression of ``model`` to 2D landmarks, batched (see the module docstring).

    Args:
        model: a ``MorphableModel`` with 68 landmark indices (``−1`` where unmapped).
        camera: the :class:`~occrecon.render.PerspectiveCamera` of the images the landmarks were detected in.
        landmarks: ``(B, 68, 2)`` pixel coordinates (x right, y down, pixel centres at +0.5), iBUG-68 order; NaN
            for missing points. Points may lie outside the image.
        weights: per-landmark weights ``(68,)`` or ``(B, 68)``, ≥ 0 (default :data:`LANDMARK_FIT_WEIGHTS_68`).
        valid: optional ``(B, 68)`` bool, False for landmarks to ignore.
        init: optional ``(B, P)`` θ: identity and expression start from it (clamped to the model's range), and
            albedo and light are carried over; the pose always starts from the closed-form estimate.
        config: :class:`~occrecon.fit.LandmarkFitConfig` (default: its defaults).
        distance: the renderer's camera distance (default by the model's units, as ``FaceRenderer``).

    Returns:
        :class:`LandmarkFit`. Faces with too few usable landmarks or a degenerate target are flagged
        ``failed`` (θ = init or zeros), never an exception and never NaN.

    Raises:
        TypeError / ValueError naming the argument for malformed input (shapes, dtypes, negative weights).
    """
    cfg = (config or LandmarkFitConfig()).validate()
    if distance is None:
        if model.units not in DEFAULT_DISTANCE:
            raise ValueError(f"distance: no default for model units {model.units!r}; pass distance=")
        distance = DEFAULT_DISTANCE[model.units]
    targets, base_w, used = _check_landmark_args(model, landmarks, weights, valid, init)
    b, dt, dev = targets.shape[0], targets.dtype, targets.device
    lay = model.layout
    theta0 = init.to(dt) if init is not None else lay.zeros(b, dtype=dt, device=dev)
    prob = _Problem(model, camera, distance, targets, base_w, used, cfg, dt)
    spread = face_scale(targets, used)
    ok = (used.sum(1) >= cfg.min_landmarks) & (spread >= MIN_SPREAD_PX)

    # the fixed part of the landmark shape: identity modes beyond id_modes (and switched-off groups) from init
    parts = lay.split(theta0)
    fixed = torch.zeros(b, 68, 3, dtype=dt, device=dev)
    _, id_all, exp_all, _ = _landmark_bases(model, dt, dev)
    if prob.n_id < model.n_id:
        fixed = fixed + torch.einsum("bk,kni->bni", parts["id"][:, prob.n_id:], id_all[prob.n_id:])
    if prob.n_exp < model.n_exp:
        fixed = fixed + torch.einsum("bk,kni->bni", parts["exp"][:, prob.n_exp:], exp_all[prob.n_exp:])

    p = torch.cat([parts["angle"], parts["trans"], parts["id"][:, :prob.n_id], parts["exp"][:, :prob.n_exp]], 1)
    p = prob.project_bounds(p)
    with torch.no_grad():
        start = prob.shape(p, fixed)
        w0 = prob.base_w * ok[:, None].to(dt)
        angles, trans, pose_ok = initial_pose(start, targets, torch.where(ok[:, None], w0, torch.ones_like(w0)),
                                              camera, distance)
        ok = ok & pose_ok
        p = torch.cat([angles, trans, p[:, 6:]], 1)
        p = torch.where(ok[:, None], p, torch.cat([parts["angle"], parts["trans"], p[:, 6:]], 1))

        mu = torch.full((b,), cfg.damping, dtype=dt, device=dev)
        scale_c = cfg.robust_scale * cfg.anneal
        cost, w_irls, r = prob.cost(p, fixed, scale_c)
        costs = [cost]
        converged = torch.zeros(b, dtype=torch.bool, device=dev)
        for _ in range(cfg.iterations):
            # the robust scale of this iteration, and the cost of the current θ under it
            if scale_c > cfg.robust_scale:
                scale_c = max(cfg.robust_scale, scale_c * 0.5)
                cost, w_irls, r = prob.cost(p, fixed, scale_c)
            jac = prob.jacobian(p, fixed).reshape(b, 136, prob.n_params)
            wr = (prob.base_w * w_irls).repeat_interleave(2, dim=1)  # (B, 136)
            jw = jac * wr[..., None]
            h = jac.transpose(1, 2) @ jw
            g = (jw * r.reshape(b, 136, 1)).sum(1) + prob.prior * p
            hd = h.diagonal(dim1=-2, dim2=-1)
            hd.add_(prob.prior + mu[:, None] * hd.clamp_min(1e-12) + 1e-12)  # prior, LM damping (in place)
            active = prob.active_bounds(p, g)  # projected Newton: bound coefficients pushed outwards stay put
            if active is not None:
                free = (~active).to(dt)
                h = h * free[:, :, None] * free[:, None, :] + torch.diag_embed(active.to(dt))
                g = g * free
            chol, info = torch.linalg.cholesky_ex(h)
            step = -torch.cholesky_solve(g[..., None], chol)[..., 0]
            good = (info == 0) & torch.isfinite(step).all(1)
            step = torch.where(good[:, None], step, torch.zeros_like(step))
            cand = prob.project_bounds(p + step)
            new_cost, new_w, new_r = prob.cost(cand, fixed, scale_c)
            better = good & torch.isfinite(new_cost) & (new_cost <= cost) & ok
            p = torch.where(better[:, None], cand, p)
            w_irls = torch.where(better[:, None], new_w, w_irls)
            r = torch.where(better[:, None, None], new_r, r)
            mu = torch.where(better, mu / 3.0, mu * 4.0).clamp(1e-9, 1e9)
            final = torch.where(better, new_cost, cost)
            rel = (cost - final).abs() / cost.abs().clamp_min(1e-30)
            converged = (rel < cfg.tolerance) & (scale_c == cfg.robust_scale)
            cost = final
            costs.append(final)
        full = parts.copy()
        full["angle"], full["trans"] = p[:, :3], p[:, 3:6]
        full["id"] = torch.cat([p[:, 6:6 + prob.n_id], parts["id"][:, prob.n_id:]], 1)
        full["exp"] = torch.cat([p[:, 6 + prob.n_id:], parts["exp"][:, prob.n_exp:]], 1)
        theta = lay.join(**full)
        theta = torch.where(ok[:, None], theta, theta0)
        vc = prob.camera_points(p, fixed)
        proj = camera.project(vc)
        mapped = (model.landmarks.to(dev) >= 0)[None, :, None]
        proj = torch.where(mapped, proj, torch.full_like(proj, float("nan")))
        dist = torch.where(used, (proj - targets).norm(dim=-1), torch.zeros_like(proj[..., 0]))
        err = dist.sum(1) / used.sum(1).clamp_min(1)
        err = torch.where(ok, err, torch.full_like(err, float("nan")))
    return LandmarkFit(theta=theta, landmarks=proj, error=err, used=used & ok[:, None], weights=w_irls * used,
                       scale=spread, cost=torch.stack(costs, 1), converged=converged & ok, failed=~ok)
