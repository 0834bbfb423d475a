"""occrecon: occlusion-robust model-based 3D face reconstruction with fast differentiable kernels.

Importing the package loads the compiled extension, which registers the ``torch.ops.occrecon`` ops.
"""
from __future__ import annotations

import torch  # noqa: F401  (the extension links libtorch: torch must be loaded first)


def _check_torch() -> None:
    """The extension works only beside the torch it was built against (its ``Requires-Dist: torch==X``): refuse
    another one with one clear message instead of an undefined-symbol error or a crash."""
    import re
    from importlib import metadata

    try:
        requires = metadata.requires("occrecon") or []
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return
    found = torch.__version__.split("+", 1)[0]
    for req in requires:
        pin = re.fullmatch(r"torch\s*==\s*([0-9][0-9A-Za-z.]*)", req.split(";", 1)[0].strip())
        if pin and pin.group(1) != found:
            raise ImportError(f"occrecon was built against torch {pin.group(1)}, but torch {torch.__version__} is "
                              f"installed: install torch=={pin.group(1)}, or rebuild occrecon against this torch "
                              f"(pip install --no-build-isolation .)")


_check_torch()

from . import _C  # noqa: E402  (registers torch.ops.occrecon.*)
from . import ops

__version__: str = _C.build_info()["version"]


def build_info() -> dict:
    """How the compiled extension was built: version, torch_version, with_cuda, cuda_archs, compiler."""
    return dict(_C.build_info())


__all__ = ["ops", "build_info", "__version__"]
