"""scikit-build-core metadata provider: ``torch==<the version the extension is built against>`` plus ``base``.

The compiled extension links libtorch, whose ABI changes between releases, so a wheel only works beside the torch
it was built with. The build runs without isolation (``pip install --no-build-isolation``), so the torch in the
build environment is the one the extension links: its version (without the local ``+cpu`` / ``+cu130`` tag) is
pinned in the wheel's ``Requires-Dist``. ``occrecon/__init__.py`` checks the pin again at import.
"""
from __future__ import annotations


def dynamic_metadata(field, settings, project=None):
    if field != "dependencies":
        raise RuntimeError(f"occrecon_torch_pin provides 'dependencies' only, not {field!r}")
    try:
        import torch
    except ImportError as exc:  # an isolated build: CMake would stop too
        raise RuntimeError("build occrecon with `pip install --no-build-isolation .` beside the torch it is for "
                           f"(torch is not importable here: {exc})") from None
    version = torch.__version__.split("+", 1)[0]
    base = settings.get("base", [])
    return [f"torch=={version}", *base]
