"""TrainConfig: YAML round trip, defaults = the paper's schedule, unknown keys and bad values named."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from occrecon.train.config import ConfigError, TrainConfig, config_diff, flatten

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_paper_schedule():
    cfg = TrainConfig()
    assert cfg.optim.name == "adadelta"
    assert cfg.optim.encoder_lr == 0.06
    assert cfg.optim.encoder_lr * cfg.optim.unet_lr_factor == pytest.approx(0.0036)
    assert (cfg.optim.decay, cfg.optim.decay_every) == (0.99, 5000)
    assert (cfg.stages.init.iterations, cfg.stage_batch_size("init")) == (300_000, 12)
    assert (cfg.stages.em.iterations, cfg.stage_batch_size("em")) == (400_000, 6)
    assert (cfg.stages.em.encoder_iters, cfg.stages.em.unet_iters, cfg.stages.em.unet_first) == (25_000, 5_000, True)
    assert cfg.stages.order == ["init", "unet_pretrain", "em"]


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig()
    cfg.data.train = ["a", "shared:b"]
    cfg.stages.em.unet_iters = 7
    cfg.losses.overrides = {"segmentation.neighbour": 10.0, "neighbour_k": 5}
    cfg.nets.encoder_scales = {"tex": 3.0, "trans": [1.0, 1.0, 0.005]}
    cfg.nets.perceptual = None
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    back = TrainConfig.from_yaml(path)
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()
    # the text is plain YAML (no python tags) and a partial file takes defaults for the rest
    assert "!!python" not in path.read_text()
    (tmp_path / "p.yaml").write_text("seed: 3\nstages:\n  em:\n    unet_iters: 2\n")
    part = TrainConfig.from_yaml(tmp_path / "p.yaml")
    assert (part.seed, part.stages.em.unet_iters, part.stages.em.encoder_iters) == (3, 2, 25_000)
    assert (part.stages.em.iterations, part.stage_batch_size("em")) == (400_000, 6)  # siblings keep the defaults


@pytest.mark.parametrize("text, key", [
    ("sede: 1\n", "sede"),
    ("stages:\n  em:\n    unet_iter: 3\n", "stages.em.unet_iter"),
    ("optim:\n  lr: 0.1\n", "optim.lr"),
])
def test_unknown_key_is_named(tmp_path, text, key):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=rf"{key}: unknown key"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")


@pytest.mark.parametrize("data, key", [
    ({"batch_size": "six"}, "batch_size"),
    ({"batch_size": 0}, "batch_size"),
    ({"stages": {"em": {"unet_first": 1}}}, "stages.em.unet_first"),
    ({"stages": {"order": ["init", "fit"]}}, "stages.order"),
    ({"stages": {"order": []}}, "stages.order"),
    ({"stages": {"em": {"encoder_iters": 0, "unet_iters": 0}}}, "stages.em"),
    ({"optim": {"name": "sgd"}}, "optim.name"),
    ({"optim": {"rho": 1.0}}, "optim.rho"),
    ({"nets": {"unet": "huge"}}, "nets.unet"),
    ({"data": {"train": "folder"}}, "data.train"),
    ({"stages": {"mofa": {"start_from": "nowhere"}}}, "stages.mofa.start_from"),
    ({"logging": {"log_every": 0}}, "logging.log_every"),
    ({"device": "tpu"}, "device"),
])
def test_bad_values_are_named(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        TrainConfig.from_dict(data)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
    (tmp_path / "l.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_yaml(tmp_path / "l.yaml")


def test_config_diff_dotted_keys():
    a = TrainConfig().to_dict()
    b = TrainConfig.from_dict({"stages": {"em": {"unet_iters": 9}}, "seed": 4}).to_dict()
    assert config_diff(a, b) == [("seed", 0, 4), ("stages.em.unet_iters", 5000, 9)]
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "a.c": {}, "d": [1]}


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load(name):
    cfg = TrainConfig.from_yaml(CONFIGS / name)
    assert yaml.safe_load(cfg.to_yaml()) == cfg.to_dict()
