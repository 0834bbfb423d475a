"""occrecon: occlusion-robust model-based 3D face reconstruction with fast differentiable kernels.

Importing the package loads the compiled extension, which registers the ``torch.ops.occrecon`` ops.
"""
from __future__ import annotations

import torch  # noqa: F401  (the extension links libtorch: torch must be loaded first)

from . import _C  # registers torch.ops.occrecon.*
from . import ops

__version__: str = _C.build_info()["version"]


def build_info() -> dict:
    """How the compiled extension was built: version, torch_version, with_cuda, cuda_archs, compiler."""
    return dict(_C.build_info())


__all__ = ["ops", "build_info", "__version__"]
