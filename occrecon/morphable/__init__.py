"""Face models: the θ layout, ``MorphableModel`` (shape, expression, albedo), loaders, an albedo prior for models
without one, a front-face crop rule and mesh export. Pure PyTorch/numpy: no rendering, no networks.

```python
from occrecon.morphable import load_model, MorphableModel
model = load_model("ict_face.npz")              # or .h5 (BFM 2017), .mat (Deep3D), sfm_3448.npz, an ICT folder
parts = model.layout.split(theta)               # theta (B, model.layout.size)
verts, albedo = model(parts["id"], parts["exp"], parts["tex"])   # (B, V, 3) each
```
"""
from __future__ import annotations

from .albedo import MEAN_SKIN_ALBEDO, laplacian_albedo
from .appearance import mirror_map, weighted_pca, with_learned_albedo
from .crop import front_face_mask
from .export import read_obj, write_obj, write_ply
from .layout import DEEP3D_ORDER, ParamLayout
from .loaders import FORMATS, convert_ict_obj, load_bfm2017, load_deep3d, load_ict_npz, load_model, load_sfm
from .model import FORMAT_VERSION, MorphableModel
from .shipped import DEFAULT_MODEL, default_model, resolve_model

__all__ = ["ParamLayout", "DEEP3D_ORDER", "MorphableModel", "FORMAT_VERSION", "FORMATS", "load_model",
           "load_ict_npz", "convert_ict_obj", "load_sfm", "load_bfm2017", "load_deep3d", "laplacian_albedo",
           "MEAN_SKIN_ALBEDO", "front_face_mask", "write_obj", "write_ply", "read_obj", "weighted_pca", "mirror_map",
           "with_learned_albedo", "DEFAULT_MODEL", "default_model", "resolve_model"]
