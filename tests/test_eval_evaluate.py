"""occrecon.eval.evaluate: dataset reader, NAME=PATH[:MODE] parsing, per-image values against closed forms."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import occrecon.cli.evaluate as cli_evaluate
import occrecon.eval.evaluate as ev
from occrecon.api import Reconstructor, default_camera
from occrecon.assets import shared_dir
from occrecon.cli import main
from occrecon.morphable import load_model
from occrecon.render import FaceRenderer

SIZE = 48


@pytest.fixture(scope="module")
def rec():
    """θ = 0 (mean face, frontal) for every image, no UNet: the scored mask is Φ."""
    model = load_model(shared_dir() / "assets/models/sfm_3448.npz")
    enc = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, model.layout.size))
    torch.nn.init.zeros_(enc[2].weight)
    torch.nn.init.zeros_(enc[2].bias)
    return Reconstructor(model, enc, None, FaceRenderer(model, camera=default_camera(SIZE)))


def _dataset(root: Path, occluded=(False, True, True), size: int = SIZE) -> Path:
    rng = np.random.default_rng(11)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    with open(root / "meta.jsonl", "w") as f:
        for i, occ in enumerate(occluded):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
            mask = (rng.random((size, size)) > (0.5 if occ else 0.0)).astype(np.uint8) * 255
            Image.fromarray(mask).save(root / "masks" / f"{i}_visible_skin_mask.png")
            f.write(json.dumps({"id": str(i), "occluded": occ}) + "\n")
    return root


def test_parse_checkpoint_arg():
    assert ev.parse_checkpoint_arg("Proposed=runs/em.pt") == ev.CheckpointSpec("Proposed", Path("runs/em.pt"))
    assert ev.parse_checkpoint_arg("Pretrained=init.pt:pseudo") == ev.CheckpointSpec("Pretrained", Path("init.pt"),
                                                                                      "pseudo")
    assert ev.parse_checkpoint_arg("A=/x/b.pt:unet").segmentation == "unet"
    for bad in ("no-equals.pt", "=x.pt", "A="):
        with pytest.raises(ValueError, match="NAME=PATH"):
            ev.parse_checkpoint_arg(bad)
    with pytest.raises(ValueError, match="mode 'soft'"):
        ev.parse_checkpoint_arg("A=x.pt:soft")


def test_dataset_reader_errors(tmp_path):
    root = _dataset(tmp_path / "d")
    samples = ev.read_eval_dataset(root)
    assert [(s.id, s.occluded) for s in samples] == [("0", False), ("1", True), ("2", True)]
    meta = root / "meta.jsonl"
    good = meta.read_text()
    cases = [("{not json\n", ValueError, "not valid JSON"), ('{"id": "0"}\n', ValueError, "'occluded'"),
             ('{"id": "0", "occluded": "yes"}\n', ValueError, "true or false"),
             (good + good.splitlines()[0] + "\n", ValueError, "repeats"),
             ('{"id": "9", "occluded": false}\n', FileNotFoundError, "9.png"), ("\n", ValueError, "no samples")]
    for text, exc, match in cases:
        meta.write_text(text)
        with pytest.raises(exc, match=match):
            ev.read_eval_dataset(root)
    meta.unlink()
    with pytest.raises(FileNotFoundError, match="meta.jsonl"):
        ev.read_eval_dataset(root)
    with pytest.raises(FileNotFoundError, match="data"):
        ev.read_eval_dataset(tmp_path / "absent")


def test_id_selection(tmp_path):
    root = _dataset(tmp_path / "d")
    (tmp_path / "ids.txt").write_text("2  # the second occluded one\n\n0\n")
    ids = ev.read_id_list(tmp_path / "ids.txt")
    assert ids == ["2", "0"]
    assert [s.id for s in ev.read_eval_dataset(root, ids)] == ["2", "0"]
    with pytest.raises(ValueError, match="ids: 1 id"):
        ev.read_eval_dataset(root, ["0", "7"])
    with pytest.raises(ValueError, match="ids: empty"):
        ev.read_eval_dataset(root, [])
    with pytest.raises(FileNotFoundError, match="ids"):
        ev.read_id_list(tmp_path / "none.txt")


def test_held_out_matches_the_training_split(tmp_path):
    dataset = pytest.importorskip("occrecon.data.dataset", reason="needs the data-synth workstream's split_ids")
    root = tmp_path / "d"
    _dataset(root, occluded=(False, True) * 5)
    lines = [json.loads(x) for x in (root / "meta.jsonl").read_text().splitlines()]
    (root / "meta.jsonl").write_text("".join(json.dumps({**r, "kind": "synthetic"}) + "\n" for r in lines))
    assert ev.held_out_ids(root, 0.3, seed=4) == dataset.split_ids(root, 0.3, 4)[1]
    with pytest.raises(ValueError, match="held_out"):
        ev.held_out_ids(root, 1.5)


def _files(root: Path, sid: str) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(Image.open(root / "images" / f"{sid}.png"), dtype=np.float64) / 255.0
    gt = (np.asarray(Image.open(root / "masks" / f"{sid}_visible_skin_mask.png")) > 127).astype(np.float64)
    return img, gt


def test_values_match_closed_forms(rec, tmp_path):
    root = _dataset(tmp_path / "d")
    samples = ev.read_eval_dataset(root)
    values = ev.evaluate_reconstructor(rec, samples, batch_size=2)
    with torch.no_grad():
        r = rec.renderer(torch.zeros(1, rec.layout.size))
    phi = r.region[0, 0].double().numpy()
    render = r.image[0].double().clamp(0, 1).permute(1, 2, 0).numpy()
    assert phi.sum() > 50 and set(np.unique(phi)) <= {0.0, 1.0}
    for i, s in enumerate(samples):
        img, gt = _files(root, s.id)
        # mask = Φ: nothing inside Φ is rejected, so FN = 0, TPR = 1 and PPV = ACC = share of GT face in Φ
        share = (gt * phi).sum() / phi.sum()
        for prefix in ("", "soft_"):
            assert values[prefix + "tpr"][i] == 1.0
            assert values[prefix + "ppv"][i] == pytest.approx(share)
            assert values[prefix + "acc"][i] == pytest.approx(share)
            assert values[prefix + "f1"][i] == pytest.approx(2 * share / (1 + share))
        sel = (gt * phi) > 0
        d = (img - render)[sel] * 255.0
        assert values["rmse"][i] == pytest.approx(math.sqrt(np.mean(d ** 2)), rel=1e-5)
        assert values["mae"][i] == pytest.approx(np.mean(np.abs(d)), rel=1e-5)
        assert values["occlusion_fraction"][i] == 0.0
    assert values["occluded"].tolist() == [False, True, True]
    by = ev.summarise_by_subset(values)
    assert (by["Unoccluded"]["f1"].count, by["Occluded"]["f1"].count, by["Overall"]["f1"].count) == (1, 2, 3)
    assert by["Unoccluded"]["ppv"].mean == pytest.approx(1.0)  # GT all visible


def test_masks_saved_as_zero_one_values(rec, tmp_path):
    root = _dataset(tmp_path / "d")
    samples = ev.read_eval_dataset(root)
    before = ev.evaluate_reconstructor(rec, samples)
    for s in samples:  # rewrite the 0/255 masks as 0/1-valued PNGs
        Image.fromarray((np.asarray(Image.open(s.mask)) > 127).astype(np.uint8)).save(s.mask)
    after = ev.evaluate_reconstructor(rec, samples)
    for k in ("acc", "f1", "rmse"):
        np.testing.assert_array_equal(before[k], after[k])


def test_pseudo_mode_uses_the_pseudo_mask(rec, tmp_path, monkeypatch):
    root = _dataset(tmp_path / "d", size=64)  # also exercises resizing 64 -> 48
    samples = ev.read_eval_dataset(root)

    def reject_left_half(target, render, region):  # a pseudo-mask with a known answer
        keep = torch.ones_like(region)
        keep[..., : SIZE // 2] = 0.0
        return keep * (region > 0.5)

    monkeypatch.setattr(ev, "_pseudo_mask_fn", lambda: reject_left_half)
    values = ev.evaluate_reconstructor(rec, samples, segmentation="pseudo")
    with torch.no_grad():
        phi = rec.renderer(torch.zeros(1, rec.layout.size)).region[0, 0].numpy()
    expected = phi[:, : SIZE // 2].sum() / phi.sum()
    np.testing.assert_allclose(values["occlusion_fraction"], expected, rtol=1e-6)
    assert values["tpr"][0] == pytest.approx(1 - expected)  # image 0 has no occluder: GT = 1 on Φ


def test_pseudo_mode_with_the_robust_init_mask(rec, tmp_path):
    from occrecon.losses import pseudo_mask

    root = _dataset(tmp_path / "d")
    samples = ev.read_eval_dataset(root)
    values = ev.evaluate_reconstructor(rec, samples, segmentation="pseudo")
    with torch.no_grad():
        r = rec.renderer(torch.zeros(1, rec.layout.size))
    for i, s in enumerate(samples):
        img, _ = _files(root, s.id)
        target = torch.from_numpy(img).float().permute(2, 0, 1)[None]
        m = pseudo_mask(target, r.image, r.region)
        assert values["occlusion_fraction"][i] == pytest.approx(1 - float(m.sum() / r.region.sum()), abs=1e-6)


def test_bad_arguments(rec, tmp_path, capsys):
    samples = ev.read_eval_dataset(_dataset(tmp_path / "d"))
    with pytest.raises(ValueError, match="segmentation"):
        ev.evaluate_reconstructor(rec, samples, segmentation="soft")
    with pytest.raises(ValueError, match="batch_size"):
        ev.evaluate_reconstructor(rec, samples, batch_size=0)
    with pytest.raises(ValueError, match="checkpoints"):
        cli_evaluate.evaluate(tmp_path / "d", [ev.CheckpointSpec("A", Path("a.pt")), ev.CheckpointSpec("A", Path("b.pt"))])
    samples[1].image.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match="1.png: cannot read"):
        ev.evaluate_reconstructor(rec, samples)
    assert main(["evaluate", "--data", str(tmp_path / "d"), "--checkpoint", "em.pt"]) == 2
    assert capsys.readouterr().err == ("occrecon evaluate: error: checkpoint: expected NAME=PATH[:MODE], got "
                                       "'em.pt'\n")


def _result(per_image: dict[str, dict[str, list]], occluded: list[bool]) -> dict:
    return {"data": "d", "threshold": 0.5, "ids": [str(i) for i in range(len(occluded))], "occluded": occluded,
            "methods": {name: {"per_image": {k: per.get(k, [0.5] * len(occluded)) for k in ev.VALUE_KEYS}}
                        for name, per in per_image.items()}}


def test_paired_differences_match_numpy():
    rng = np.random.default_rng(4)
    occ = [bool(v) for v in rng.random(9) < 0.6]
    base = {"f1": list(rng.random(9)), "rmse": list(rng.uniform(10, 40, 9))}
    prop = {"f1": [v + d for v, d in zip(base["f1"], rng.normal(0.05, 0.02, 9))], "rmse": list(rng.uniform(10, 40, 9))}
    prop["f1"][2] = None  # an undefined per-image F1 leaves that pair out
    res = ev.paired_differences(_result({"Pretrained": base, "Proposed": prop}, occ), "Pretrained")
    assert list(res) == ["Proposed"] and set(res["Proposed"]) == set(ev.SUBSETS)
    for subset, pick in (("Occluded", np.array(occ)), ("Overall", np.ones(9, bool))):
        for key, lower in (("f1", False), ("rmse", True)):
            a = np.array([np.nan if v is None else v for v in prop[key]])[pick]
            b = np.array(base[key])[pick]
            ok = ~np.isnan(a)
            d = a[ok] - b[ok]
            got = res["Proposed"][subset][key]
            assert got.count == d.size and math.isclose(got.mean, d.mean(), rel_tol=1e-12)
            assert math.isclose(got.sem, d.std(ddof=1) / math.sqrt(d.size), rel_tol=1e-9)
            assert got.better == int(((d < 0) if lower else (d > 0)).sum())
    result = _result({"Pretrained": base, "Proposed": prop}, occ)
    for m in result["methods"].values():
        vals = {k: np.array([np.nan if v is None else v for v in m["per_image"][k]]) for k in ev.VALUE_KEYS}
        m["summary"] = ev.summarise_by_subset({**vals, "occluded": np.array(occ)})
    text = ev.format_report(result, paired_with="Pretrained")
    assert "Paired with Pretrained" in text and f"({res['Proposed']['Occluded']['f1'].better}/" in text
    with pytest.raises(KeyError, match="no method 'MoFA'"):
        ev.paired_differences(_result({"Pretrained": base}, occ), "MoFA")
    with pytest.raises(KeyError, match="not per-image"):
        ev.paired_differences(_result({"Pretrained": base}, occ), "Pretrained", keys=("psnr",))


def test_the_trivial_and_skin_colour_rows(rec, tmp_path):
    """``:all`` scores M = Φ whatever the reconstructor's mask; ``:skin`` scores Φ · the YCbCr skin rule of the
    photo (computed here in numpy)."""
    root = _dataset(tmp_path / "d")
    samples = ev.read_eval_dataset(root)
    base = ev.evaluate_reconstructor(rec, samples)  # this reconstructor has no UNet: its mask is Φ
    every = ev.evaluate_reconstructor(rec, samples, segmentation="all")
    for k in ("f1", "acc", "rmse", "occlusion_fraction"):
        np.testing.assert_allclose(every[k], base[k])
    skin = ev.evaluate_reconstructor(rec, samples, segmentation="skin")
    with torch.no_grad():
        phi = rec.renderer(torch.zeros(1, rec.layout.size)).region[0, 0].double().numpy()
    for i, s in enumerate(samples):
        img, _ = _files(root, s.id)
        r, g, b = (img[..., c] * 255 for c in range(3))
        cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
        cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
        m = ((cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)) * phi
        assert skin["occlusion_fraction"][i] == pytest.approx(1 - m.sum() / phi.sum(), abs=1e-6)
    assert ev.parse_checkpoint_arg("Skin=a.pt:skin").segmentation == "skin"
    assert ev.parse_checkpoint_arg("All=a.pt:all").segmentation == "all"


def test_masks_are_scored_where_the_truth_is_known(rec, tmp_path):
    """A real sample's ``_labelled_mask.png``: the segmentation metrics count Φ · labelled only (closed forms with
    M = Φ); the reconstruction error and samples without the file are unchanged."""
    root = _dataset(tmp_path / "d")
    plain = ev.evaluate_reconstructor(rec, ev.read_eval_dataset(root))
    rng = np.random.default_rng(5)
    known = (rng.random((SIZE, SIZE)) > 0.4).astype(np.uint8) * 255
    Image.fromarray(known).save(root / "masks" / "1_labelled_mask.png")
    samples = ev.read_eval_dataset(root)
    assert [s.labelled is not None for s in samples] == [False, True, False]
    values = ev.evaluate_reconstructor(rec, samples)
    with torch.no_grad():
        phi = rec.renderer(torch.zeros(1, rec.layout.size)).region[0, 0].double().numpy()
    _, gt = _files(root, "1")
    w = phi * (known > 127)
    share = (gt * w).sum() / w.sum()
    assert values["acc"][1] == pytest.approx(share) and values["f1"][1] == pytest.approx(2 * share / (1 + share))
    assert values["f1"][1] != pytest.approx(plain["f1"][1])
    for k in ("f1", "acc", "rmse"):
        assert values[k][[0, 2]].tolist() == pytest.approx(plain[k][[0, 2]].tolist())
    assert values["rmse"][1] == pytest.approx(plain["rmse"][1])
    Image.fromarray(known[:-1]).save(root / "masks" / "1_labelled_mask.png")
    with pytest.raises(ValueError, match="1_labelled_mask.png"):
        ev.evaluate_reconstructor(rec, ev.read_eval_dataset(root))


def test_the_medians_table_matches_numpy():
    """The report's medians: per method, the occluded subset's ACC / F1 / RMSE, the unoccluded subset's RMSE and
    kept share 1 − occlusion fraction, NaN values left out (hand-computed values)."""
    occ = [False, True, True, True, False]
    per = {"f1": [0.1, 0.9, None, 0.5, 0.2], "acc": [0.0, 0.6, 0.8, 0.7, 0.0], "rmse": [10.0, 30.0, 20.0, 40.0, 14.0],
           "occlusion_fraction": [0.04, 0.5, 0.5, 0.5, 0.1]}
    text = ev.format_medians(_result({"A": per}, occ))
    row = text.splitlines()[-1].split()
    assert row == ["A", "0.700", "0.700", "30.00", "12.00", "0.930"]  # median F1 of (0.9, 0.5); kept (0.96, 0.9)
    md = ev.format_medians(_result({"A": per, "B": {}}, occ), markdown=True)
    assert "| A | 0.700 | 0.700 | 30.00 | 12.00 | 0.930 |" in md and "| B | 0.500 | 0.500 | 0.50 | 0.50 | 0.500 |" in md
