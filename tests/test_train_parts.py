"""Pieces of the training loop checked on their own: EM schedule, region BCE on logits, sample order, loss
config building, resume config check, CSV log and overlay images."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from occrecon.train.config import ConfigError, TrainConfig
from occrecon.train.data import StepSampler, prepare_batch
from occrecon.train.logs import CsvLog, overlay_grid
from occrecon.train.loop import ConfigMismatchError, build_loss_config, check_resume_config
from occrecon.train.stages import em_phase, region_bce_with_logits


def test_em_phase_paper_cycle():
    # paper: per 30k iterations 5k UNet (first, as in the code) then 25k encoder
    assert [em_phase(i, 25_000, 5_000) for i in (0, 4_999, 5_000, 29_999, 30_000, 34_999, 35_000)] == \
        ["unet", "unet", "encoder", "encoder", "unet", "unet", "encoder"]
    assert [em_phase(i, 2, 1, unet_first=False) for i in range(6)] == \
        ["encoder", "encoder", "unet", "encoder", "encoder", "unet"]
    assert {em_phase(i, 0, 3) for i in range(7)} == {"unet"}
    with pytest.raises(ValueError, match="iteration"):
        em_phase(-1, 1, 1)
    with pytest.raises(ValueError, match="encoder_iters"):
        em_phase(0, 0, 0)


def test_region_bce_with_logits_hand_values():
    logits = torch.tensor([0.0, 2.0, -1.0, 5.0]).view(1, 1, 2, 2)
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 2)
    region = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 1, 2, 2)
    # -log σ(0) = log 2; -log(1 - σ(2)) = log(1 + e²); -log(1 - σ(-1)) = log(1 + e^-1); last pixel outside Φ
    expected = (math.log(2) + math.log(1 + math.e ** 2) + math.log(1 + math.e ** -1)) / 3
    assert region_bce_with_logits(logits, labels, region).item() == pytest.approx(expected, rel=1e-6)
    # stable on large logits (a sigmoid-then-log would give inf)
    big = region_bce_with_logits(torch.full((1, 1, 2, 2), 200.0), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    assert big.item() == pytest.approx(200.0)
    assert region_bce_with_logits(logits, labels, torch.zeros_like(region)).item() == 0.0
    with pytest.raises(ValueError, match="shapes"):
        region_bce_with_logits(logits, labels, region[..., :1])


def _stream(sampler: StepSampler, n: int) -> list[int]:
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_step_sampler_resumes_and_splits():
    full = _stream(StepSampler(10, 3, seed=5), 3 * 9)  # 2.7 epochs
    assert sorted(full[:10]) == list(range(10)) and sorted(full[10:20]) == list(range(10))
    assert full[:10] != list(range(10))  # shuffled
    resumed = _stream(StepSampler(10, 3, seed=5, start_step=4), 3 * 5)
    assert resumed == full[12:]
    # two processes: disjoint halves of every epoch, each padded DistributedSampler-style
    r0 = _stream(StepSampler(10, 1, seed=5, rank=0, world_size=2), 5)
    r1 = _stream(StepSampler(10, 1, seed=5, rank=1, world_size=2), 5)
    assert sorted(r0 + r1) == list(range(10))
    with pytest.raises(ValueError, match="length"):
        StepSampler(0, 1)
    with pytest.raises(ValueError, match="batch_size"):
        StepSampler(3, 0)


def test_prepare_batch_resizes_image_and_landmarks():
    img = torch.zeros(1, 3, 224, 224)
    img[:, :, 112:, :] = 1.0  # bottom half white
    lms = torch.full((1, 68, 2), 112.0)
    lms[0, 3] = float("nan")
    sample = {"image": img, "landmarks": lms, "mask": torch.ones(1, 1, 224, 224)}
    b = prepare_batch(sample, torch.device("cpu"), 64)
    assert b.image.shape == (1, 3, 64, 64) and b.mask.shape == (1, 1, 64, 64)
    assert torch.equal(b.image[0, 0, 31:33, 0], torch.tensor([0.0, 1.0]))  # the edge stays at the centre
    assert b.landmarks[0, 0].tolist() == [32.0, 32.0]  # 112 · 64/224: the centre stays the centre
    assert not b.landmark_valid[0, 3] and b.landmark_valid[0, 4] and b.landmarks[0, 3].tolist() == [0.0, 0.0]
    with pytest.raises(KeyError, match="landmarks"):
        prepare_batch({"image": img, "mask": img[:, :1]}, torch.device("cpu"), 64)


def test_build_loss_config_preset_overrides_and_no_perceptual():
    cfg = TrainConfig.from_dict({"losses": {"preset": "focus", "overrides": {"segmentation.neighbour": 7.0,
                                                                               "neighbour_k": 3}}})
    lc = build_loss_config(cfg, perceptual=True)
    assert lc.segmentation.neighbour == 7.0 and lc.neighbour_k == 3
    assert lc.reconstruction.photometric == 0.5  # the rest of FOCUS is kept
    off = build_loss_config(TrainConfig(), perceptual=False)
    assert (off.perceptual_ex, off.perceptual_in, off.reconstruction.perceptual, off.init.perceptual) == \
        (False, False, 0.0, 0.0)
    assert off.segmentation.neighbour == 15.0
    bad = TrainConfig.from_dict({"losses": {"overrides": {"segmentation.neighbor": 1.0}}})
    with pytest.raises(ConfigError, match=r"losses\.overrides\.segmentation\.neighbor: unknown LossConfig key"):
        build_loss_config(bad, perceptual=True)
    with pytest.raises(ConfigError, match=r"losses\.overrides\.segmentation: unknown LossConfig key"):
        build_loss_config(TrainConfig.from_dict({"losses": {"overrides": {"segmentation": 1.0}}}), perceptual=True)
    with pytest.raises(ConfigError, match=r"losses\.overrides: neighbour_k must be an odd int"):
        build_loss_config(TrainConfig.from_dict({"losses": {"overrides": {"neighbour_k": 4}}}), perceptual=True)


def test_resume_config_check_lists_differences():
    old = TrainConfig().to_dict()
    new = TrainConfig.from_dict({"seed": 3, "logging": {"log_every": 5}}).to_dict()
    with pytest.raises(ConfigMismatchError) as e:
        check_resume_config(old, new, allow_harmless=True)
    msg = str(e.value)
    assert "seed: 0 → 3" in msg and "logging.log_every: 100 → 5  (harmless)" in msg
    harmless = TrainConfig.from_dict({"stages": {"em": {"iterations": 9}}, "logging": {"out_dir": "x"}}).to_dict()
    with pytest.raises(ConfigMismatchError, match="allow-config-change"):
        check_resume_config(old, harmless)
    assert check_resume_config(old, harmless, allow_harmless=True) == [
        ("logging.out_dir", "runs/default", "x"), ("stages.em.iterations", 400_000, 9)]
    assert check_resume_config(old, TrainConfig().to_dict()) == []


def test_csv_log_grows_columns_and_truncates(tmp_path):
    log = CsvLog(tmp_path / "em.csv")
    log.append({"stage": "em", "iteration": 1, "seg_area": 0.5, "loss": 0.25, "seconds": 1.0})
    log.append({"stage": "em", "iteration": 2, "rec_photometric": 1.0 / 3.0, "loss": 0.1, "seconds": 2.0})
    back = CsvLog(tmp_path / "em.csv")
    assert back.header == ["stage", "iteration", "seg_area", "loss", "rec_photometric", "seconds"]
    assert back.rows[0]["rec_photometric"] == "" and float(back.rows[1]["rec_photometric"]) == 1.0 / 3.0
    back.truncate(1)
    assert [r["iteration"] for r in CsvLog(tmp_path / "em.csv").rows] == ["1"]


def test_overlay_grid_layout():
    t = torch.zeros(2, 3, 4, 5)
    r = torch.ones(2, 3, 4, 5)
    m = torch.zeros(2, 1, 4, 5)
    m[1] = 1.0
    g = overlay_grid(t, r, m, count=2)
    assert g.shape == (8, 15, 3) and g.dtype == np.uint8
    assert (g[:, :5] == 0).all() and (g[:, 5:10] == 255).all()
    assert (g[:4, 10:] == 0).all() and (g[4:, 10:] == 255).all()
    with pytest.raises(ValueError, match="mask"):
        overlay_grid(t, r, m[:1])


@pytest.mark.parametrize("tail", ["em,3,0.", "em", "e", "em,x,1,2,3\r\n", "em,3,1,2,3,4,5\r\n"])
def test_csv_log_drops_a_row_cut_by_a_kill(tmp_path, tail):
    log = CsvLog(tmp_path / "em.csv")
    for it in (1, 2):
        log.append({"stage": "em", "iteration": it, "seg_area": 0.5, "loss": 0.25, "seconds": 1.0})
    with open(tmp_path / "em.csv", "a", newline="", encoding="utf-8") as f:
        f.write(tail)  # a half-written row, or a garbled one
    back = CsvLog(tmp_path / "em.csv")
    assert [r["iteration"] for r in back.rows] == ["1", "2"]
    back.truncate(1)  # used to fail: int(None) for a row cut inside its first field
    back.append({"stage": "em", "iteration": 2, "seg_area": 0.75, "loss": 0.5, "seconds": 2.0})
    assert [(r["iteration"], r["seg_area"]) for r in CsvLog(tmp_path / "em.csv").rows] == [("1", "0.5"), ("2", "0.75")]
    assert (tmp_path / "em.csv").read_text(encoding="utf-8").count("\n") == 3
    assert not list(tmp_path.glob("*.tmp"))
