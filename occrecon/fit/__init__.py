"""The fitting engine: per-image robust analysis-by-synthesis of a morphable model.

```python
from occrecon.fit import fit_landmarks, fit_image, ImageFitConfig, fit_preset
lm = fit_landmarks(model, camera, landmarks)             # pose, identity, expression from 68 2D points
res = fit_image(renderer, images, landmarks, config=fit_preset("fast"))   # every θ group, robust EM
res.theta, res.image, res.region, res.mask, res.converged, res.diverged
```

Layer: above ``render``, ``morphable`` and ``losses``; below ``api`` and ``train``.
"""
from .config import FIT_PRESETS, LANDMARK_FIT_WEIGHTS_68, ImageFitConfig, LandmarkFitConfig, fit_preset
from .image import FitResult, fit_image, robust_mask, scaled_renderer
from .landmarks import LandmarkFit, face_scale, fit_landmarks, initial_pose, pose_from_rotation
from .light import LightEstimate, VertexObservations, ransac_light, visible_vertices

__all__ = ["fit_image", "FitResult", "robust_mask", "scaled_renderer", "ransac_light", "visible_vertices",
           "LightEstimate", "VertexObservations", "fit_landmarks", "LandmarkFit", "LandmarkFitConfig",
           "ImageFitConfig", "FIT_PRESETS", "fit_preset", "LANDMARK_FIT_WEIGHTS_68", "face_scale", "initial_pose",
           "pose_from_rotation"]
