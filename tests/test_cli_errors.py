"""Every command of ``occrecon`` (but ``train``, which has its own tests) on bad input: a missing, damaged or refused
checkpoint, a missing or corrupt photo, a bad face model or landmark file, a device this machine does not have. Each
gives one line ``occrecon <command>: error: ...`` on stderr naming the file or the argument, no traceback, and exit
status 2 — the files are real ones, written in tmp_path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from occrecon.api import CHECKPOINT_FORMAT
from occrecon.cli import main
from occrecon.demo import BUNDLED_CHECKPOINT


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Bad inputs of every kind: ``{name: path}``."""
    root = tmp_path_factory.mktemp("bad")
    data = BUNDLED_CHECKPOINT.read_bytes()
    files = {
        "text.pt": b"hello world\n",
        "empty.pt": b"",
        "truncated.pt": data[: len(data) // 3],
        "corrupt.jpg": b"\xff\xd8\xff\xe0 not really a JPEG",
        "text.npz": b"mean: 1 2 3\n",
        "latin1.txt": "caf\u00e9 1 2\n".encode("latin-1"),
        "points.txt": b"20 25\n44 25\n32 35\n24 46\n40 46\n",
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    torch.save({"format": CHECKPOINT_FORMAT, "payload": types.SimpleNamespace(a=1)}, root / "refused.pt")
    np.savez(root / "nan.npz", format_version=np.int64(1), mean=np.full((3, 3), np.nan))
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(root / "grey.png")
    (root / "folder").mkdir()
    return {p.name: p for p in root.iterdir()} | {"missing.pt": root / "missing.pt", "missing.jpg": root / "missing.jpg",
                                                 "missing.npz": root / "missing.npz", "root": root}


def _one_line(capsys, argv: list[str], command: str, *names, rc: int = 2) -> str:
    """Run ``occrecon argv``; assert the exit status and one error line naming every one of ``names``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == rc, (argv, out, err)
    err = "".join(line for line in err.replace("\r", "\n").splitlines(keepends=True)  # progress bars and what
                  if "%|" not in line and line.strip())  # clears them: not part of the error
    assert err.startswith(f"occrecon {command}: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    for name in names:
        assert str(name) in err, (name, err)
    return err


CHECKPOINTS = ["text.pt", "empty.pt", "truncated.pt", "missing.pt", "folder", "refused.pt"]


def _check_refused(err: str, name: str) -> None:
    if name == "refused.pt":  # the command line's flag, not the API's argument
        assert "pass --trusted" in err and "trusted=True" not in err and "types.SimpleNamespace" in err
    else:
        assert "trusted" not in err  # damaged or missing: no reason to unpickle it


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_reconstruct_bad_checkpoint(bad, capsys, name, tmp_path):
    err = _one_line(capsys, ["reconstruct", bad["grey.png"], "--checkpoint", bad[name], "--out", tmp_path],
                    "reconstruct", bad[name])
    _check_refused(err, name)


@pytest.mark.parametrize("name", ["text.pt", "refused.pt"])
def test_checkpoint_readers_bad_checkpoint(bad, capsys, name, tmp_path):
    """demo, evaluate, evaluate-fit and checkpoint export read checkpoints the same way."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(data / "images" / "s0.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(data / "masks" / "s0_visible_skin_mask.png")
    (data / "meta.jsonl").write_text(json.dumps({"id": "s0", "occluded": False}) + "\n")
    ckpt = bad[name]
    for argv, command in ((["demo", "reconstruction", "--checkpoint", ckpt, "--out", tmp_path], "demo"),
                          (["evaluate", "--data", data, "--checkpoint", f"A={ckpt}"], "evaluate"),
                          (["evaluate-fit", "--checkpoint", ckpt, "--out", tmp_path], "evaluate-fit"),
                          (["checkpoint", "export", ckpt, tmp_path / "slim.pt"], "checkpoint export")):
        _check_refused(_one_line(capsys, argv, command, ckpt), name)
    assert not (tmp_path / "slim.pt").exists()


def test_trusted_flag_reads_the_refused_checkpoint(bad, capsys, tmp_path):
    """With --trusted the pickled object is read; the checkpoint then fails its own checks, in one line."""
    err = _one_line(capsys, ["reconstruct", bad["grey.png"], "--checkpoint", bad["refused.pt"], "--trusted",
                             "--out", tmp_path], "reconstruct", bad["refused.pt"])
    assert "key(s) ['stage', 'nets', 'encoder', 'unet'] missing" in err
    err = _one_line(capsys, ["checkpoint", "export", bad["refused.pt"], tmp_path / "x.pt", "--trusted"],
                    "checkpoint export", bad["refused.pt"])
    assert "missing" in err


def test_bad_photos(bad, capsys, tmp_path):
    _one_line(capsys, ["reconstruct", bad["missing.jpg"], "--out", tmp_path], "reconstruct", bad["missing.jpg"])
    # a corrupt photo among the inputs is reported by name and not reconstructed: status 1, no traceback
    assert main(["reconstruct", str(bad["corrupt.jpg"]), "--out", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"NOT RECONSTRUCTED {bad['corrupt.jpg']}: unreadable: {bad['corrupt.jpg']}: not a readable image" in out
    assert err == "" and "Traceback" not in out
    for image in ("missing.jpg", "corrupt.jpg"):
        _one_line(capsys, ["demo", "neighbour", "--image", bad[image], "--points", bad["points.txt"], "--out",
                           tmp_path], "demo", bad[image])
    for points in ("missing.jpg", "latin1.txt"):
        _one_line(capsys, ["demo", "neighbour", "--image", bad["grey.png"], "--points", bad[points], "--out",
                           tmp_path], "demo", bad[points])


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("name", ["text.npz", "nan.npz", "missing.npz", "truncated.pt"])
def test_bad_face_models(bad, capsys, name, tmp_path):
    err = _one_line(capsys, ["model", "convert", bad[name], tmp_path / "out.npz"] + (
        ["--format", "sfm"] if name == "truncated.pt" else []), "model convert", bad[name])
    if name == "nan.npz":
        assert "key(s)" in err  # an occrecon file without its other keys: named, before any array is used
    _one_line(capsys, ["reconstruct", bad["grey.png"], "--model", bad[name], "--out", tmp_path], "reconstruct",
              bad[name])
    _one_line(capsys, ["reconstruct", bad["grey.png"], "--checkpoint", BUNDLED_CHECKPOINT, "--model", bad[name],
                       "--out", tmp_path], "reconstruct", bad[name])
    _one_line(capsys, ["data", "synth", "--out", tmp_path / "ds", "--synthetic", "1", "--workers", "1", "--model",
                       bad[name]], "data synth", bad[name])


def test_a_landmark_file_that_is_not_utf8(bad, capsys, tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "meta.jsonl").write_text(json.dumps({"id": "f0", "identity": 0}) + "\n")
    (faces / "landmarks.csv").write_bytes(("images/f\u00e90.jpg," + ",".join(["1"] * 136) + "\n").encode("latin-1"))
    err = _one_line(capsys, ["evaluate-fit", "--faces", faces, "--out", tmp_path / "o"], "evaluate-fit",
                    f"{faces / 'landmarks.csv'}:1: not UTF-8 text")
    assert "byte 0xe9" in err


def test_devices_this_machine_does_not_have(bad, capsys, tmp_path):
    for device in ["cuda:99", "gpu"] + ([] if torch.cuda.is_available() else ["cuda"]):
        _one_line(capsys, ["reconstruct", bad["grey.png"], "--device", device, "--out", tmp_path], "reconstruct",
                  f"--device {device}" if device != "gpu" else "--device: 'gpu' is not a torch device")
        _one_line(capsys, ["evaluate", "--data", tmp_path, "--checkpoint", f"A={BUNDLED_CHECKPOINT}", "--device",
                           device], "evaluate", "--device")
        _one_line(capsys, ["data", "landmarks", bad["root"], "--out", tmp_path / "lm.csv", "--backend", "fan",
                           "--device", device], "data landmarks", "--device")


def test_other_input_errors(bad, capsys, tmp_path):
    _one_line(capsys, ["evaluate", "--data", tmp_path / "nowhere", "--checkpoint", f"A={BUNDLED_CHECKPOINT}"],
              "evaluate", tmp_path / "nowhere")
    _one_line(capsys, ["evaluate-fit", "--no-encoder", "--model", tmp_path / "no.npz", "--out", tmp_path],
              "evaluate-fit", tmp_path / "no.npz")
    _one_line(capsys, ["evaluate-fit", "--faces", tmp_path / "nowhere", "--out", tmp_path], "evaluate-fit",
              tmp_path / "nowhere")
    _one_line(capsys, ["data", "landmarks", bad["missing.jpg"], "--out", tmp_path / "x.csv"], "data landmarks",
              bad["missing.jpg"])
    _one_line(capsys, ["reconstruct", bad["grey.png"], "--batch-size", "0", "--out", tmp_path], "reconstruct",
              "--batch-size")


def test_the_installed_command_prints_one_line(bad, tmp_path):
    """The same through a real process (``python -m occrecon``): what a user sees."""
    env = dict(os.environ, OCCRECON_TRACEBACK="")
    for argv, name in ((["reconstruct", bad["grey.png"], "--checkpoint", bad["truncated.pt"], "--out", tmp_path],
                        bad["truncated.pt"]),
                       (["checkpoint", "export", bad["refused.pt"], tmp_path / "x.pt"], "pass --trusted")):
        proc = subprocess.run([sys.executable, "-m", "occrecon", *map(str, argv)], capture_output=True,
                              text=True, env=env, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and str(name) in proc.stderr and "Traceback" not in proc.stderr


def test_version_and_debug(bad, tmp_path, capsys):
    """``--version`` prints the package version; ``--debug`` turns a user error's line into its traceback."""
    import occrecon

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"occrecon {occrecon.__version__}"
    env = dict(os.environ, OCCRECON_TRACEBACK="")
    argv = ["--debug", "reconstruct", bad["grey.png"], "--checkpoint", bad["truncated.pt"], "--out", tmp_path]
    proc = subprocess.run([sys.executable, "-m", "occrecon", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and str(bad["truncated.pt"]) in proc.stderr
