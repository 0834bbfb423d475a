"""TrainConfig: YAML round trip, defaults = the paper's schedule, unknown keys and bad values named."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from occrecon.train import config as config_mod
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


def test_top_level_batch_size_is_the_default_of_every_stage(tmp_path):
    cfg = TrainConfig.from_dict({"batch_size": 3, "stages": {"em": {"batch_size": 5}}})
    assert [cfg.stage_batch_size(s) for s in ("init", "unet_pretrain", "em", "mofa")] == [3, 3, 5, 3]
    paper = TrainConfig.from_dict({"stages": {"em": {"batch_size": 4}}})  # no top-level value: the paper's
    assert [paper.stage_batch_size(s) for s in ("init", "unet_pretrain", "em", "mofa")] == [12, 12, 4, 12]
    tiny = TrainConfig.from_yaml(CONFIGS / "tiny.yaml")  # batch_size: 2 and no stage sets one
    assert {tiny.stage_batch_size(s) for s in tiny.stages.order} == {2}
    cfg.to_yaml(tmp_path / "c.yaml")
    assert TrainConfig.from_yaml(tmp_path / "c.yaml").stage_batch_size("mofa") == 3


def test_resume_compares_the_batch_sizes_stages_use():
    from occrecon.train.loop import ConfigMismatchError, check_resume_config

    old = TrainConfig().to_dict()  # as checkpoints wrote it before: every stage's batch, a top-level 6 unused
    old["batch_size"] = 6
    for name, b in (("init", 12), ("unet_pretrain", 12), ("em", 6), ("mofa", 12)):
        old["stages"][name]["batch_size"] = b
    assert check_resume_config(old, TrainConfig().to_dict()) == []
    with pytest.raises(ConfigMismatchError, match=r"stages\.init\.batch_size: 12 → 2") as e:
        check_resume_config(old, TrainConfig.from_dict({"batch_size": 2, "stages": {"em": {"batch_size": 6}}})
                            .to_dict())
    assert "stages.em.batch_size" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("optim:\n  encoder_lr: .inf\n", "optim.encoder_lr: must be a finite number, got inf"),
    ("optim:\n  encoder_lr: -.inf\n", "optim.encoder_lr: must be a finite number, got -inf"),
    ("optim:\n  unet_lr_factor: .nan\n", "optim.unet_lr_factor: must be a finite number, got nan"),
    ("optim:\n  encoder_lr: 0\n", "optim.encoder_lr: must be a positive finite number, got 0.0"),
    ("optim:\n  eps: -1.0e-6\n", "optim.eps: must be a positive finite number, got -1e-06"),
    ("optim:\n  decay: 1.5\n", "optim.decay: must be a finite number in (0, 1], got 1.5"),
    ("optim:\n  weight_decay: -0.1\n", "optim.weight_decay: must be a finite number >= 0, got -0.1"),
    ("optim:\n  decay_every: 0\n", "optim.decay_every: must be a positive integer, got 0"),
    ("data:\n  held_out: .nan\n", "data.held_out: must be a finite number, got nan"),
    ("data:\n  held_out: 1.0\n", "data.held_out: must be a finite number in [0, 1), got 1.0"),
    ("data:\n  image_size: 64.0\n", "data.image_size: expected an integer, got 64.0"),
    ("stages:\n  em:\n    iterations: 1e3\n", "stages.em.iterations: expected an integer, got 1000.0"),
    ("stages:\n  init:\n    batch_size: -2\n", "stages.init.batch_size: must be a positive integer, got -2"),
    ("seed: -1\n", "seed: must be a non-negative integer < 4294967296, got -1"),
    ("seed: 4294967296\n", "seed: must be a non-negative integer < 4294967296, got 4294967296"),
    ("nets:\n  encoder_scales: {tex: .inf}\n", "nets.encoder_scales.tex: must be a finite number or a list"),
    ("nets:\n  encoder_scales: {trans: [1, .nan, 1]}\n", "nets.encoder_scales.trans: must be a finite number"),
    ("losses:\n  overrides: {sigma: .inf}\n", "losses.overrides.sigma: must be a finite number, got inf"),
])
def test_numbers_must_be_finite_and_in_range(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    assert str(e.value).startswith(f"{tmp_path / 'c.yaml'}: {message}"), str(e.value)


def test_validate_checks_values_set_in_code():
    cfg = TrainConfig()
    cfg.optim.encoder_lr = float("inf")
    with pytest.raises(ConfigError, match=r"^optim\.encoder_lr: must be a positive finite number, got inf$"):
        cfg.validate()
    cfg = TrainConfig()
    cfg.stages.em.unet_iters = 2.5
    with pytest.raises(ConfigError, match=r"^stages\.em\.unet_iters: must be a non-negative integer, got 2\.5$"):
        cfg.validate()
    cfg = TrainConfig()
    cfg.batch_size = True
    with pytest.raises(ConfigError, match=r"^batch_size: must be a positive integer, got True$"):
        cfg.validate()


def test_yaml_key_given_twice_is_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("batch_size: 4\nseed: 1\nbatch_size: 8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 3: the key 'batch_size' is given twice"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    (tmp_path / "s.yaml").write_text("stages:\n  em: {iterations: 2, iterations: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 2: the key 'iterations' is given twice"):
        TrainConfig.from_yaml(tmp_path / "s.yaml")


def test_yaml_exponent_floats_and_unreadable_files(tmp_path):
    (tmp_path / "e.yaml").write_text("optim:\n  encoder_lr: 1e-3\n  eps: 5E-7\n", encoding="utf-8")
    cfg = TrainConfig.from_yaml(tmp_path / "e.yaml")  # PyYAML alone reads "1e-3" as a string
    assert (cfg.optim.encoder_lr, cfg.optim.eps) == (1e-3, 5e-7)
    (tmp_path / "bad.yaml").write_text("seed: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML: ") as e:
        TrainConfig.from_yaml(tmp_path / "bad.yaml")
    assert "\n" not in str(e.value)
    (tmp_path / "bin.yaml").write_bytes(b"seed: \xff\xfe\x00\x01")
    with pytest.raises(ConfigError, match=r"bin\.yaml: not a UTF-8 text file \(invalid start byte at byte 6\)"):
        TrainConfig.from_yaml(tmp_path / "bin.yaml")


def test_to_yaml_replaces_the_file_atomically(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    TrainConfig().to_yaml(path)
    before = path.read_text(encoding="utf-8")
    cfg = TrainConfig()
    cfg.seed = 5

    def failing_replace(src, dst):  # the temp file is written, the rename fails
        assert Path(src).read_text(encoding="utf-8") == cfg.to_yaml()
        raise OSError("No space left on device")

    monkeypatch.setattr(config_mod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        cfg.to_yaml(path)
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == before and not list(tmp_path.glob("*.tmp"))
    cfg.to_yaml(path)
    assert TrainConfig.from_yaml(path).seed == 5 and sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
