"""``FaceRenderer``: θ → rendered face image, rendered region Φ, depth and 2D landmarks, differentiable end to end.

The image formation of "To fit or not to fit" (and Deep3D): a morphable model gives vertices and albedo from θ's
shape / expression / albedo coefficients; a rigid pose (3 Euler angles + translation) places the face in front of
a pinhole camera; Lambertian spherical-harmonics lighting (9 bands × RGB) shades it per vertex; the rasterizer
draws it. The renderer knows nothing of how the model was built: any object with the ``MorphableModel`` interface
(``layout.split``, ``__call__(shape, expr, albedo)``, ``triangles``, ``landmarks``, ``units``, optionally
``front_face``) works.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..ops.sh import sh_shade
from .antialias import antialias, antialias_construct_topology_hash
from .camera import PerspectiveCamera
from .normals import vertex_normals
from .raster import interpolate, rasterize

__all__ = ["FaceRenderer", "FaceRender", "DEFAULT_DISTANCE"]

#: Camera distance of the default framing, per model unit: Deep3D's 10 dm (BFM) = 1 m.
DEFAULT_DISTANCE = {"m": 1.0, "dm": 10.0, "cm": 100.0, "mm": 1000.0}

#: Deep3D's initial ambient light, added to the DC SH coefficient of each colour channel.
DEFAULT_AMBIENT = 0.8


class FaceRender(NamedTuple):
    image: torch.Tensor  # (B, 3, H, W) rendered face I_R (composited over the background when one is given)
    region: torch.Tensor  # (B, 1, H, W) rendered region Φ: 1 where the face covers the pixel (antialiased if enabled)
    depth: torch.Tensor  # (B, 1, H, W) camera distance (-z in camera space, model units), 0 outside Φ
    landmarks: torch.Tensor  # (B, 68, 2) pixel coordinates (u right, v down); NaN where the model has none
    vertices: torch.Tensor  # (B, V, 3) camera-space vertices

    @property
    def mask(self) -> torch.Tensor:
        """Former name of :attr:`region` (it is Φ, not the face mask M of the segmentation); deprecated."""
        import warnings

        warnings.warn("FaceRender.mask is the rendered region Φ and is now FaceRender.region", DeprecationWarning,
                      stacklevel=2)
        return self.region


class FaceRenderer(torch.nn.Module):
    """Render faces from θ in the model's :class:`~occrecon.morphable.ParamLayout`.

    Args:
        model: a ``MorphableModel`` (or an object with the same interface).
        camera: a :class:`PerspectiveCamera`; default: focal 1015 px, 224 × 224, centred (Deep3D / FOCUS framing).
        distance: camera distance added to θ's z translation (the face sits at ``z = -distance + t_z``); default by
            the model's units (:data:`DEFAULT_DISTANCE`: 1 m).
        ambient: added to the DC SH coefficient of each channel (Deep3D's 0.8), so θ = 0 gives a lit face.
        use_antialias: blend silhouette edges analytically (nvdiffrast's ``antialias``): gives position gradients
            at the face outline. Off by default, as in the paper's renderer.
        front_face_only: draw only the triangles of the model's ``front_face`` vertex mask (models such as ICT
            include scalp, ears and neck); ignored when the model has no mask.

    ``forward(theta, background=None)`` returns a :class:`FaceRender`. Row 0 of every image is the top row.
    """

    def __init__(self, model, camera: PerspectiveCamera | None = None, distance: float | None = None,
                 ambient: float = DEFAULT_AMBIENT, use_antialias: bool = False, front_face_only: bool = True):
        super().__init__()
        self.model = model
        self.camera = camera if camera is not None else PerspectiveCamera()
        if distance is None:
            if model.units not in DEFAULT_DISTANCE:
                raise ValueError(f"distance: no default for model units {model.units!r}; pass distance=")
            distance = DEFAULT_DISTANCE[model.units]
        self.distance = float(distance)
        self.ambient = float(ambient)
        self.use_antialias = bool(use_antialias)
        self.front_face_only = bool(front_face_only)
        tri = model.triangles.to(torch.int32)
        front = getattr(model, "front_face", None)
        if front_face_only and front is not None and bool(front.any()):
            keep = front.to(torch.bool)[tri.long()].all(dim=1)
            tri = tri[keep]
        self.register_buffer("tri", tri.contiguous(), persistent=False)
        self._topology = None

    @property
    def layout(self):
        return self.model.layout

    def _topo(self) -> torch.Tensor:
        if self._topology is None or self._topology.device != self.tri.device:
            self._topology = antialias_construct_topology_hash(self.tri)
        return self._topology

    def camera_vertices(self, theta: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3)`` camera-space vertices of θ, as :meth:`forward` poses them, without rasterizing
        (``camera.project`` of them gives the pixels)."""
        theta = theta.to(self.model.mean.dtype)
        parts = self.layout.split(theta)
        verts, _ = self.model(parts["id"], parts["exp"], parts["tex"])
        trans = parts["trans"] + theta.new_tensor([0.0, 0.0, -self.distance])
        return self.camera.transform(verts, parts["angle"], trans)

    def forward(self, theta: torch.Tensor, background: torch.Tensor | None = None) -> FaceRender:
        """Args:
            theta: ``(B, layout.size)`` parameters (id, exp, tex, angle, gamma, trans).
            background: optional ``(B, 3, H, W)`` image to composite the face over (pixels outside Φ).
        """
        if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
            raise TypeError(f"theta must be a floating-point tensor, got {getattr(theta, 'dtype', type(theta))}")
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(theta).all()):
            raise ValueError("theta contains NaN or Inf values")
        theta = theta.to(self.model.mean.dtype)  # e.g. bf16 from an encoder under autocast: computed in the model's
        parts = self.layout.split(theta)  # raises ValueError naming the expected layout on a wrong length
        b = theta.shape[0]
        h, w = self.camera.image_size
        if background is not None and tuple(background.shape) != (b, 3, h, w):
            raise ValueError(f"background must be (B, 3, H, W) = ({b}, 3, {h}, {w}), got {tuple(background.shape)}")
        verts, albedo = self.model(parts["id"], parts["exp"], parts["tex"])
        trans = parts["trans"] + theta.new_tensor([0.0, 0.0, -self.distance])
        v_cam = self.camera.transform(verts, parts["angle"], trans)
        normals = vertex_normals(v_cam, self.tri)
        gamma = parts["gamma"].reshape(b, 3, 9)  # Deep3D's flat [R9 | G9 | B9]
        gamma = gamma + torch.nn.functional.pad(gamma.new_full((b, 3, 1), self.ambient), (0, 8))
        colour = sh_shade(normals, albedo, gamma.transpose(1, 2))  # (B, V, 3)

        clip = self.camera.to_clip(v_cam).contiguous()
        rast, _ = rasterize(None, clip, self.tri, (h, w), grad_db=False)
        attrs = torch.cat([colour, (-v_cam[..., 2:3])], -1)  # colour and depth in one interpolation
        out, _ = interpolate(attrs, rast, self.tri)
        covered = (rast[..., 3:4] > 0).to(out.dtype)
        if self.use_antialias:
            out = antialias(torch.cat([out, covered], -1), rast, clip, self.tri, topology_hash=self._topo())
            image, depth, mask = out[..., :3], out[..., 3:4], out[..., 4:5]
        else:
            image, depth, mask = out[..., :3], out[..., 3:4], covered
        # rasterizer row 0 is the bottom row: flip to image order, channels first
        image, depth, mask = (x.flip(1).permute(0, 3, 1, 2) for x in (image, depth, mask))
        if background is not None:
            image = image * mask + background * (1 - mask)

        pts, valid = self.model.landmark_points(v_cam)
        # unmapped landmarks: project a harmless point (not the origin, where 1/z would poison the gradients)
        pts = torch.where(valid.view(1, -1, 1), pts, pts.new_tensor([0.0, 0.0, -1.0]))
        lms = self.camera.project(pts)
        lms = torch.where(valid.view(1, -1, 1), lms, torch.full_like(lms, float("nan")))
        return FaceRender(image, mask, depth, lms, v_cam)
