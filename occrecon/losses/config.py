"""Loss weights and variant switches: the paper's values by default, the authors' FOCUS rework by name, and the
paper's segmentation ablations (sec. 4.5, Table 4) as named presets.

Ablations (the paper trains the segmentation network with):

- ``"baseline"``: the pixel-wise loss instead of the neighbour loss (L_img^ex with k = 1) and no perceptual
  terms — "no other losses" in the paper; we keep L_img^in and L_bi, without which the mask collapses.
- ``"neighbour"``: the neighbour loss L_img^ex (k = 3) instead of the pixel-wise one, no perceptual terms.
- ``"perceptual"``: the baseline plus both perceptual terms L_per^ex and L_per^in (pixel-wise, k = 1).
- ``"proposed"``: everything (k = 3 and both perceptual terms) = ``LossConfig.paper()``.

The reconstruction step and the initialisation are the same in all four.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import _args
from .image import FOCUS_NEIGHBOUR_K, PAPER_NEIGHBOUR_K
from .perceptual import PERCEPTUAL_KINDS
from .robust import CODE_SIGMA, resolve_xi

__all__ = ["SegmentationWeights", "ReconstructionWeights", "InitWeights", "LossConfig", "ABLATIONS", "PRESETS"]

#: The paper's ablation pipelines (Table 4), in its order.
ABLATIONS = ("baseline", "neighbour", "perceptual", "proposed")
#: Every name :meth:`LossConfig.preset` accepts.
PRESETS = ABLATIONS + ("paper", "focus")


class _Weights:
    """Base of the weight sets: every field a finite number >= 0; ``paper()`` = the defaults."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {v!r}")

    @classmethod
    def paper(cls):
        """The paper's weights (the dataclass defaults)."""
        return cls()


@dataclass(frozen=True)
class SegmentationWeights(_Weights):
    """L_S = a·L_img^ex + b·L_per^ex + c·L_img^in + d·L_per^in + e·L_bi (encoder frozen). Paper, sec. 3.2:
    a = 15, b = 3, c = 0.5, d = 2.5, e = 10."""

    neighbour: float = 15.0  # a, L_img^ex
    perceptual_ex: float = 3.0  # b, L_per^ex
    area: float = 0.5  # c, L_img^in
    perceptual_in: float = 2.5  # d, L_per^in
    binary: float = 10.0  # e, L_bi

    @classmethod
    def focus(cls) -> SegmentationWeights:
        """FOCUS: 15·neighbour (5×5) + 3·dist + 0.5·area + 0.25·preserve + 10·binary."""
        return cls(neighbour=15.0, perceptual_ex=3.0, area=0.5, perceptual_in=0.25, binary=10.0)


@dataclass(frozen=True)
class ReconstructionWeights(_Weights):
    """L_R = f·L_img^R + g·L_per^R + h·L_img^in + i·L_lm + j·L_reg (UNet frozen). Paper, sec. 3.2: f = 4,
    g = 0.5, h = 0.5, i = 0.01, j = 0.067."""

    photometric: float = 4.0  # f, L_img^R
    perceptual: float = 0.5  # g, L_per^R
    area: float = 0.5  # h, L_img^in
    landmark: float = 0.01  # i, L_lm
    regulariser: float = 0.067  # j, L_reg
    teacher_vertex: float = 0.0  # not in the paper: the fitting-engine teacher (losses.teacher_loss), optional
    teacher_landmark: float = 0.0

    @classmethod
    def focus(cls) -> ReconstructionWeights:
        """FOCUS encoder step: 0.5·rec + 0.25·per + 0.06·area + 5e-4·lm + 0.1·reg."""
        return cls(photometric=0.5, perceptual=0.25, area=0.06, landmark=5e-4, regulariser=0.1)


@dataclass(frozen=True)
class InitWeights(_Weights):
    """Robust initialisation (sec. 3.3): likelihood (eqs. 8-9) + landmarks + regulariser + perceptual.

    The paper states no weights for this stage. ``paper()`` uses the paper's own reconstruction-step weights for
    the terms it shares with L_R (landmark i = 0.01, regulariser j = 0.067) and the authors' 2021 release for
    the others (likelihood 0.5, perceptual 0.25). ``focus()`` is the authors' code: 0.5 / 5e-4 / 0.1 / 0.25.
    ``teacher_vertex`` / ``teacher_landmark`` weigh the fitting-engine teacher (every front-face vertex / the
    landmark vertices, :func:`occrecon.losses.teacher_loss`); 0 (the paper) unless a config sets them.
    """

    likelihood: float = 0.5
    landmark: float = 0.01
    regulariser: float = 0.067
    perceptual: float = 0.25
    teacher_vertex: float = 0.0  # the fitting-engine teacher (losses.teacher_loss; data.teacher), off by default
    teacher_landmark: float = 0.0

    @classmethod
    def focus(cls) -> InitWeights:
        return cls(likelihood=0.5, landmark=5e-4, regulariser=0.1, perceptual=0.25)


_WEIGHT_TYPES = {"segmentation": SegmentationWeights, "reconstruction": ReconstructionWeights, "init": InitWeights}


@dataclass(frozen=True)
class LossConfig:
    """All weights and variant switches of the three objectives.

    Attributes:
        segmentation, reconstruction, init: the weights.
        neighbour_k: window of L_img^ex (1 = pixel-wise, paper 3, FOCUS 5).
        neighbour_squared, photometric_squared: squared RGB distance (paper) or its norm (authors' code).
        perceptual_ex, perceptual_in: whether the segmentation step uses L_per^ex / L_per^in (ablations).
        area_form, binary_form, perceptual_in_form, landmark_form, regulariser_form: ``"paper"`` or ``"code"``
            (see the term functions).
        segmentation_perceptual_kind, reconstruction_perceptual_kind, init_perceptual_kind: ``"features"``
            (intermediate feature maps, the paper) or ``"identity"`` (embedding, the authors' L_per^R).
        xi: pseudo-mask threshold (``"paper"`` 0.17, ``"code"`` (3σ)², or a number); sigma: σ of eq. 8.
        likelihood_background: add the constant outlier term to the robust likelihood.
    """

    segmentation: SegmentationWeights = field(default_factory=SegmentationWeights)
    reconstruction: ReconstructionWeights = field(default_factory=ReconstructionWeights)
    init: InitWeights = field(default_factory=InitWeights)
    neighbour_k: int = PAPER_NEIGHBOUR_K
    neighbour_squared: bool = True
    photometric_squared: bool = True
    perceptual_ex: bool = True
    perceptual_in: bool = True
    area_form: str = "paper"
    binary_form: str = "paper"
    perceptual_in_form: str = "paper"
    landmark_form: str = "paper"
    regulariser_form: str = "paper"
    segmentation_perceptual_kind: str = "features"
    reconstruction_perceptual_kind: str = "features"
    init_perceptual_kind: str = "features"
    xi: float | str = "paper"
    sigma: float = CODE_SIGMA
    likelihood_background: bool = False

    def __post_init__(self) -> None:
        for name, typ in _WEIGHT_TYPES.items():
            if not isinstance(getattr(self, name), typ):
                raise TypeError(f"{name} must be a {typ.__name__}, got {type(getattr(self, name)).__name__}")
        k = self.neighbour_k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"neighbour_k must be an odd int >= 1, got {k!r}")
        for name in ("neighbour_squared", "photometric_squared", "perceptual_ex", "perceptual_in",
                     "likelihood_background"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("area_form", "binary_form", "perceptual_in_form", "landmark_form", "regulariser_form"):
            _args.choice(name, getattr(self, name), _args.FORMS)
        for name in ("segmentation_perceptual_kind", "reconstruction_perceptual_kind", "init_perceptual_kind"):
            _args.choice(name, getattr(self, name), PERCEPTUAL_KINDS)
        resolve_xi(self.xi)
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not self.sigma > 0:
            raise ValueError(f"sigma must be a positive number, got {self.sigma!r}")

    @classmethod
    def paper(cls) -> LossConfig:
        """The paper's method ("Proposed"): its weights, k = 3, squared distances, both perceptual terms."""
        return cls()

    @classmethod
    def focus(cls) -> LossConfig:
        """The authors' FOCUS rework: its weights, k = 5, unsquared norms, their term forms, ξ = (3σ)², the
        identity embedding for L_per^R and the init perceptual term."""
        return cls(segmentation=SegmentationWeights.focus(), reconstruction=ReconstructionWeights.focus(),
                   init=InitWeights.focus(), neighbour_k=FOCUS_NEIGHBOUR_K, neighbour_squared=False,
                   photometric_squared=False, area_form="code", binary_form="code", perceptual_in_form="code",
                   landmark_form="code", regulariser_form="code", reconstruction_perceptual_kind="identity",
                   init_perceptual_kind="identity", xi="code")

    @classmethod
    def preset(cls, name: str) -> LossConfig:
        """One of :data:`PRESETS`: the ablations ``baseline | neighbour | perceptual | proposed`` (module
        docstring), ``paper`` (= ``proposed``) or ``focus``."""
        _args.choice("name", name, PRESETS)
        if name == "focus":
            return cls.focus()
        neighbour = name in ("neighbour", "proposed", "paper")
        perceptual = name in ("perceptual", "proposed", "paper")
        return cls(neighbour_k=PAPER_NEIGHBOUR_K if neighbour else 1, perceptual_ex=perceptual,
                   perceptual_in=perceptual)

    def replace(self, **changes: Any) -> LossConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LossConfig:
        """Inverse of :meth:`to_dict`; missing keys take the paper's defaults, unknown keys are refused."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"data: unknown LossConfig keys {unknown}")
        kwargs = dict(data)
        for name, typ in _WEIGHT_TYPES.items():
            if name in kwargs and isinstance(kwargs[name], dict):
                sub = kwargs[name]
                bad = sorted(set(sub) - {f.name for f in dataclasses.fields(typ)})
                if bad:
                    raise ValueError(f"data[{name!r}]: unknown {typ.__name__} keys {bad}")
                kwargs[name] = typ(**sub)
        return cls(**kwargs)
