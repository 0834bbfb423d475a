"""Training batches: a resumable, distributed sample order and the batch preparation (device, size, landmarks).

The order of samples is a pure function of ``(seed, step)``: epoch ``e`` is ``DistributedSampler``'s permutation
for ``seed`` and epoch ``e`` (split over the processes), and the stream of epochs is cut into batches. A run
resumed at step ``s`` therefore sees exactly the batches a straight run sees from step ``s`` on, without
replaying the data before it.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, Sampler

__all__ = ["StepSampler", "Batch", "make_loader", "prepare_batch", "build_dataset", "DATASET_IMAGE_SIZE"]

#: Side of the dataset crops (the contract's aligned 224² training images).
DATASET_IMAGE_SIZE = 224


class StepSampler(Sampler[int]):
    """Endless index stream of one process, starting at the first sample of step ``start_step``.

    Args:
        length: dataset size (> 0).
        batch_size: samples per step and process (> 0).
        seed: seed of the per-epoch permutations.
        rank, world_size: this process and the number of processes (``DistributedSampler`` split: each epoch is
            padded by repetition to a multiple of ``world_size``).
        start_step: steps already done (their samples are skipped without being loaded).
        shuffle: permute each epoch (else the dataset order).
    """

    def __init__(self, length: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start_step: int = 0, shuffle: bool = True):
        if length < 1:
            raise ValueError(f"length: the dataset is empty ({length} samples)")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be > 0, got {batch_size}")
        if start_step < 0:
            raise ValueError(f"start_step: must be >= 0, got {start_step}")
        self._epoch_sampler = DistributedSampler(range(length), num_replicas=world_size, rank=rank,
                                                 shuffle=shuffle, seed=seed, drop_last=False)
        self.batch_size = batch_size
        self.start_step = start_step

    @property
    def per_epoch(self) -> int:
        """Samples of one epoch on this process."""
        return len(self._epoch_sampler)

    def __iter__(self) -> Iterator[int]:
        offset = self.start_step * self.batch_size
        epoch, skip = divmod(offset, self.per_epoch)
        while True:
            self._epoch_sampler.set_epoch(epoch)
            order = list(self._epoch_sampler)
            yield from order[skip:]
            skip = 0
            epoch += 1


def build_dataset(folders: Sequence[str], augment: bool, held_out: float = 0.0, split_seed: int = 0,
                  cache: bool = False, teacher: bool = False) -> Dataset:
    """``FaceDataset`` of each folder (``shared:`` prefixes resolved), concatenated when there are several;
    only the training part of ``split_ids(folder, held_out, split_seed)`` (the samples a folder marks held out
    are never trained on, whatever ``held_out``); ``cache``: keep decoded samples in memory; ``teacher``: each
    sample's θ* from the folder's ``fit/`` (``occrecon data fit``)."""
    from ..data.dataset import FaceDataset, split_ids
    from .config import resolve_path

    if not folders:
        raise ValueError("data.train: no dataset folder given")
    sets = []
    for f in folders:
        path = resolve_path(f)
        if not path.is_dir():
            raise FileNotFoundError(f"data.train: no dataset folder {path}")
        train_ids, held = split_ids(path, held_out, split_seed)  # a split written into the folder always holds
        ids = train_ids if held_out > 0 or held else None
        sets.append(FaceDataset(path, augment=augment, ids=ids, cache=cache, teacher=teacher))
    return sets[0] if len(sets) == 1 else ConcatDataset(sets)


def make_loader(dataset: Dataset, batch_size: int, seed: int, rank: int, world_size: int, start_step: int,
                num_workers: int = 0) -> DataLoader:
    """An endless DataLoader over :class:`StepSampler` (its worker seeds come from a generator seeded by
    ``seed``, never from the global RNG, so creating it does not shift the training randomness)."""
    sampler = StepSampler(len(dataset), batch_size, seed=seed, rank=rank, world_size=world_size,
                          start_step=start_step)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      generator=gen, drop_last=True, persistent_workers=False)


@dataclass
class Batch:
    """One training batch on the training device.

    Attributes:
        image: ``(B, 3, S, S)`` float32 target I_T in [0, 1].
        landmarks: ``(B, 68, 2)`` float32 pixel coordinates at size S (non-finite entries replaced by 0).
        landmark_valid: ``(B, 68)`` bool, False where the dataset gave no finite landmark.
        mask: ``(B, 1, S, S)`` ground-truth visible-face mask (for logging only; training never sees it).
        affine, flip: the data augmentation of each sample, its affine rescaled to size S (the teacher's
            vertices move with it, :func:`occrecon.losses.teacher_targets`); None when the dataset gives none.
        teacher_theta: the fitting engine's θ* per sample (``data.teacher``), NaN rows where a sample has none.
    """

    image: torch.Tensor
    landmarks: torch.Tensor
    landmark_valid: torch.Tensor
    mask: torch.Tensor
    affine: torch.Tensor | None = None  # (B, 2, 3) augmentation, un-augmented -> batch pixels (at size S)
    flip: torch.Tensor | None = None  # (B,) bool: the augmentation mirrored the sample
    teacher_theta: torch.Tensor | None = None  # (B, P) the fitting engine's θ* (NaN rows: no teacher)


def prepare_batch(sample: dict[str, torch.Tensor], device: torch.device, image_size: int) -> Batch:
    """``FaceDataset`` collated dict → :class:`Batch` on ``device``, resized to ``image_size`` (area filter;
    landmarks scaled by ``image_size / 224``, exact for the pixel-centre convention)."""
    for key in ("image", "landmarks", "mask"):
        if key not in sample:
            raise KeyError(f"sample: the dataset item has no {key!r} (keys: {sorted(sample)})")
    image = sample["image"].to(device=device, dtype=torch.float32)
    lms = sample["landmarks"].to(device=device, dtype=torch.float32)
    mask = sample["mask"].to(device=device, dtype=torch.float32)
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"sample['image']: expected (B, 3, H, W), got {tuple(image.shape)}")
    if lms.shape[1:] != (68, 2):
        raise ValueError(f"sample['landmarks']: expected (B, 68, 2), got {tuple(lms.shape)}")
    size = image.shape[-1]
    if image_size != size:
        image = F.interpolate(image, size=(image_size, image_size), mode="area")
        mask = F.interpolate(mask, size=(image_size, image_size), mode="area")
        lms = lms * (image_size / size)
    valid = torch.isfinite(lms).all(-1)
    lms = torch.where(valid.unsqueeze(-1), lms, torch.zeros_like(lms))
    affine = flip = teacher = None
    if "affine" in sample:
        affine = sample["affine"].to(device=device, dtype=torch.float32).clone()
        affine[:, :, 2] *= image_size / size  # the same map between pixel grids scaled by image_size / size
        flip = sample["flip"].to(device=device).bool()
    if "teacher_theta" in sample:
        teacher = sample["teacher_theta"].to(device=device, dtype=torch.float32)
    return Batch(image.contiguous(), lms, valid, mask, affine, flip, teacher)
