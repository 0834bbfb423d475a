"""The face model shipped with the package: ICT-FaceKit's narrow face with a learned albedo and illumination prior
(``occrecon/models/README.md``), the default model of the fitting engine."""
from __future__ import annotations

from pathlib import Path

from .model import MorphableModel

__all__ = ["DEFAULT_MODEL", "default_model", "resolve_model"]

#: Path of the shipped model file.
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "ict_narrowface_learned.npz"


def default_model() -> MorphableModel:
    """The shipped model (float32, CPU), read from :data:`DEFAULT_MODEL`."""
    from .loaders import load_model

    return load_model(DEFAULT_MODEL)


def resolve_model(model: MorphableModel | str | Path | None) -> MorphableModel:
    """A model from a ``MorphableModel``, a file for :func:`~occrecon.morphable.load_model`, or None / ``"default"``
    (the shipped model)."""
    from .loaders import load_model

    if isinstance(model, MorphableModel):
        return model
    if model is None or (isinstance(model, str) and model == "default"):
        return default_model()
    return load_model(model)
