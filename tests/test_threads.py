"""One ``Reconstructor`` shared by several threads: every call gives what a call alone gives, and nothing of the
module changes (parameters, BatchNorm statistics, the training flags), whether the module is in train or eval mode,
with the encoder alone, with the UNet as the fit's E-step, and through ``is_occluded``."""
from __future__ import annotations

import copy
import threading

import pytest
import torch

from occrecon.api import Reconstructor
from occrecon.demo import BUNDLED_CHECKPOINT

THREADS = 4
CALLS = 6  # per thread, each with its own input


@pytest.fixture(scope="module")
def rec():
    return Reconstructor.from_checkpoint(BUNDLED_CHECKPOINT)  # compact encoder and UNet (BatchNorm, dropout)


def _inputs(rec, n: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, *rec.image_size, generator=gen) for _ in range(n)]


def _state(rec) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in rec.state_dict().items()}


def _flags(rec) -> list[bool]:
    return [m.training for m in rec.modules()]


def _in_threads(fn, inputs: list) -> list:
    """``fn(x)`` for every input, ``THREADS`` threads taking turns over the list, all started together."""
    results: list = [None] * len(inputs)
    errors: list = []
    start = threading.Barrier(THREADS)

    def work(k: int) -> None:
        try:
            start.wait()
            for i in range(k, len(inputs), THREADS):
                results[i] = fn(inputs[i])
        except BaseException as e:  # noqa: BLE001  (reported below, in the main thread)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _assert_same(got, want) -> None:
    for name in ("theta", "image", "region", "mask", "landmarks"):
        a, b = getattr(got, name), getattr(want, name)
        assert torch.equal(a.isnan(), b.isnan()), name
        torch.testing.assert_close(a.nan_to_num(), b.nan_to_num(), rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_threads_match_sequential_calls_and_change_nothing(rec, mode):
    rec.train(mode == "train")
    state, flags = _state(rec), _flags(rec)
    inputs = _inputs(rec, THREADS * CALLS, seed=1)
    want = [rec(x) for x in inputs]
    got = _in_threads(rec, inputs)
    for g, w in zip(got, want):
        _assert_same(g, w)
    occluded = _in_threads(rec.is_occluded, inputs)
    for o, w in zip(occluded, want):
        assert torch.equal(o, torch.nan_to_num(w.occlusion_fraction, nan=0.0) > 0.1)
    assert _flags(rec) == flags
    after = rec.state_dict()
    assert after.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(after[k], v), k
    rec.eval()


def test_a_call_in_train_mode_is_an_eval_mode_call(rec):
    """What a PyTorch user expects of inference: running BatchNorm statistics and no dropout, in either mode; and
    ``rec.train()`` still trains: the nets themselves stay in train mode."""
    x = _inputs(rec, 1, seed=2)[0]
    rec.eval()
    want = rec(x)
    rec.train()
    try:
        _assert_same(rec(x), want)
        assert rec.encoder.training and rec.unet.training
        with torch.no_grad():  # the net itself (a copy here) still runs in batch mode, as trained
            assert not torch.allclose(copy.deepcopy(rec.encoder)(x), want.theta, atol=1e-3)
    finally:
        rec.eval()


def test_fit_with_the_unet_in_threads(rec):
    """The fit path (UNet E-step) in train mode: 4 threads, the same results as alone, the module unchanged."""
    from occrecon.fit import fit_preset

    cfg = fit_preset("fast").replace(rounds=1, steps=3, image_size=None)
    fitter = Reconstructor(rec.model, rec.encoder, rec.unet, rec.renderer, fit=cfg, fit_mask="unet")
    fitter.train()
    state, flags = _state(fitter), _flags(fitter)
    inputs = _inputs(fitter, THREADS, seed=3)
    want = [fitter(x) for x in inputs]
    got = _in_threads(fitter, inputs)
    for g, w in zip(got, want):
        _assert_same(g, w)
    assert _flags(fitter) == flags
    after = fitter.state_dict()
    for k, v in state.items():
        assert torch.equal(after[k], v), k
    rec.eval()
