"""Face models: the θ layout, ``MorphableModel`` (shape, expression, albedo), loaders, an albedo prior for models
without one, a front-face crop rule and mesh export. Pure PyTorch/numpy: no rendering, no networks.

```python
from occrecon.morphable import MorphableModel
model = MorphableModel.load("model.npz")
parts = model.layout.split(theta)               # theta (B, model.layout.size)
verts, albedo = model(parts["id"], parts["exp"], parts["tex"])   # (B, V, 3) each
```
"""
from __future__ import annotations

from .albedo import MEAN_SKIN_ALBEDO, laplacian_albedo
from .crop import front_face_mask
from .export import read_obj, write_obj, write_ply
from .layout import DEEP3D_ORDER, ParamLayout
from .model import FORMAT_VERSION, MorphableModel

__all__ = ["ParamLayout", "DEEP3D_ORDER", "MorphableModel", "FORMAT_VERSION", "laplacian_albedo",
           "MEAN_SKIN_ALBEDO", "front_face_mask", "write_obj", "write_ply", "read_obj"]
