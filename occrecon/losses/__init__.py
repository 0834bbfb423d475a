"""Loss terms and objectives of "To fit or not to fit" (Li et al.), paper equations 1-9.

Terms (each returns a scalar, or ``(B,)`` with ``reduction="none"``):
``neighbour_image_loss`` L_img^ex (eq. 1), ``perceptual_ex`` L_per^ex (eq. 2), ``area_loss`` L_img^in (eq. 3),
``perceptual_in`` L_per^in (eq. 4), ``binary_loss`` L_bi, ``photometric_loss`` L_img^R (eq. 5),
``perceptual_rec`` L_per^R (eq. 6), ``landmark_loss`` L_lm (eq. 7), ``regulariser`` L_reg, and the robust
initialisation's ``robust_likelihood`` / ``pseudo_mask`` (eqs. 8-9).
Objectives: ``segmentation_loss``, ``reconstruction_loss``, ``init_loss`` -> ``(total, {name: weighted term})``,
configured by ``LossConfig`` (presets ``paper``/``proposed``, ``baseline``, ``neighbour``, ``perceptual``,
``focus``).
"""
from .config import ABLATIONS, PRESETS, InitWeights, LossConfig, ReconstructionWeights, SegmentationWeights
from .image import FOCUS_NEIGHBOUR_K, PAPER_NEIGHBOUR_K, area_loss, binary_loss, neighbour_image_loss, photometric_loss
from .landmarks import CONTOUR_WEIGHT, EYEBROW_WEIGHT, INNER_WEIGHT, LANDMARK_WEIGHTS_68, landmark_loss
from .objectives import init_loss, reconstruction_loss, segmentation_loss
from .perceptual import (PERCEPTUAL_KINDS, perceptual_distance, perceptual_ex, perceptual_in, perceptual_rec,
                         run_perceptual)
from .regulariser import CODE_REG_DIVISOR, REGULARISED_GROUPS, regulariser
from .skin import skin_mask
from .teacher import teacher_loss, teacher_targets
from .robust import (CODE_OUTLIER_STDS, CODE_SIGMA, CODE_XI, PAPER_XI, XI_PRESETS, background_log_likelihood,
                     face_log_normaliser, pseudo_mask, resolve_xi, robust_likelihood)

__all__ = [
    "neighbour_image_loss", "perceptual_ex", "area_loss", "perceptual_in", "binary_loss", "photometric_loss",
    "perceptual_rec", "landmark_loss", "regulariser", "robust_likelihood", "pseudo_mask",
    "perceptual_distance", "run_perceptual", "resolve_xi", "face_log_normaliser", "background_log_likelihood",
    "segmentation_loss", "reconstruction_loss", "init_loss", "teacher_loss", "teacher_targets", "skin_mask",
    "SegmentationWeights", "ReconstructionWeights", "InitWeights", "LossConfig", "ABLATIONS", "PRESETS",
    "LANDMARK_WEIGHTS_68", "CONTOUR_WEIGHT", "EYEBROW_WEIGHT", "INNER_WEIGHT", "REGULARISED_GROUPS",
    "CODE_REG_DIVISOR", "PAPER_XI", "CODE_SIGMA", "CODE_OUTLIER_STDS", "CODE_XI", "XI_PRESETS",
    "PAPER_NEIGHBOUR_K", "FOCUS_NEIGHBOUR_K", "PERCEPTUAL_KINDS",
]
