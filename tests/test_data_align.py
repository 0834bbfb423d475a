"""occrecon.data.align: five points, closed-form fits, warping consistency, renderer template."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from occrecon.data.align import (TEMPLATE_224, align_face, align_faces, estimate_alignment, five_from_68,
                                 invert_affine, template_from_model, transform_points, warp_affine,
                                 warp_affine_tensor)


def similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


@pytest.fixture(scope="module")
def sfm():
    from occrecon.assets import shared_dir
    from occrecon.morphable import load_model

    return load_model(shared_dir() / "assets" / "models" / "sfm_3448.npz")


def test_five_from_68_hand_values():
    pts = np.full((68, 2), np.nan)
    pts[36:42] = [[0, 0], [2, 0], [4, 0], [0, 6], [2, 6], [4, 6]]  # mean (2, 3)
    pts[42:48] = np.arange(12).reshape(6, 2)  # mean (5, 6)
    pts[30], pts[48], pts[54] = [7, 8], [9, 10], [11, 12]
    want = np.array([[2, 3], [5, 6], [7, 8], [9, 10], [11, 12]], float)
    np.testing.assert_allclose(five_from_68(pts), want)  # NaN jaw/brows do not matter
    got = five_from_68(torch.tensor(np.stack([pts, pts + 1])))
    assert isinstance(got, torch.Tensor) and got.shape == (2, 5, 2)
    np.testing.assert_allclose(got.numpy(), np.stack([want, want + 1]))
    with pytest.raises(ValueError, match="points"):
        five_from_68(np.zeros((67, 2)))
    pts[30] = np.nan
    with pytest.raises(ValueError, match="points.*NaN"):
        five_from_68(pts)


def test_template_is_the_sfm_render_and_ict_is_similar(sfm):
    from occrecon.assets import shared_dir
    from occrecon.morphable import load_model

    np.testing.assert_allclose(template_from_model(sfm), TEMPLATE_224, atol=2e-3)
    ict = template_from_model(load_model(shared_dir() / "assets" / "models" / "ict_narrowface.npz"))
    assert np.linalg.norm(ict - TEMPLATE_224, axis=1).max() < 8.0
    s = estimate_alignment(ict, rotate=True)  # ICT points -> SFM template: near-identity similarity
    assert abs(np.sqrt(np.linalg.det(s[:, :2])) - 1) < 0.2 and abs(s[1, 0]) < 1e-2


@pytest.mark.parametrize("rotate", [False, True])
def test_known_transform_recovered_exactly(rotate):
    true = similarity(0.37, 0.3 if rotate else 0.0, 41.0, -17.5)
    five = transform_points(TEMPLATE_224, invert_affine(true))  # photo points that map onto the template
    np.testing.assert_allclose(estimate_alignment(five, rotate=rotate), true, atol=1e-10)
    # batched, other crop size: the template scales by size / 224
    got = estimate_alignment(np.stack([five, five]), size=112, rotate=rotate)
    np.testing.assert_allclose(got[1], np.diag([0.5, 0.5, 1.0])[:2] @ np.vstack([true, [0, 0, 1]]), atol=1e-10)


def test_scale_translation_fit_is_the_least_squares_solution():
    rng = np.random.default_rng(0)
    five = transform_points(TEMPLATE_224, similarity(2.0, 0.2, 30, 50)) + rng.normal(0, 2, (5, 2))
    m = estimate_alignment(five, rotate=False)
    # independent: solve the 3-parameter linear least squares [x 1 0; y 0 1] (s, tx, ty) = template
    a = np.zeros((10, 3))
    a[0::2, 0], a[0::2, 1] = five[:, 0], 1
    a[1::2, 0], a[1::2, 2] = five[:, 1], 1
    (s, tx, ty), *_ = np.linalg.lstsq(a, TEMPLATE_224.reshape(-1), rcond=None)
    np.testing.assert_allclose(m, [[s, 0, tx], [0, s, ty]], atol=1e-9)


def test_degenerate_and_bad_points_raise():
    with pytest.raises(ValueError, match="five is degenerate"):
        estimate_alignment(np.full((5, 2), 100.0))
    with pytest.raises(ValueError, match="five contains NaN"):
        estimate_alignment(np.where(np.eye(5, 2) > 0, np.nan, TEMPLATE_224))
    with pytest.raises(ValueError, match="five must be"):
        estimate_alignment(np.zeros((4, 2)))
    upside_down = transform_points(TEMPLATE_224, similarity(1.0, np.pi, 300, 300))
    with pytest.raises(ValueError, match="upside down"):
        estimate_alignment(upside_down)
    np.testing.assert_allclose(  # a full similarity handles it
        transform_points(upside_down, estimate_alignment(upside_down, rotate=True)), TEMPLATE_224, atol=1e-9)
    img = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="image must be"):
        align_face(img.astype(np.float32), TEMPLATE_224)
    with pytest.raises(ValueError, match="size"):
        align_face(img, TEMPLATE_224, size=0)
    with pytest.raises(ValueError, match="padding"):
        align_face(img, TEMPLATE_224, padding="mirror")
    with pytest.raises(ValueError, match="singular"):
        invert_affine(np.zeros((2, 3)))


def smooth(x, y):
    return 127.5 + 60 * np.sin(x / 13.0) * np.cos(y / 17.0) + 0.2 * (x - y)


@pytest.mark.parametrize("scale, atol", [(1.6, 1.0), (0.5, 3.0)])
def test_warp_matches_the_analytic_image(scale, atol):
    h, w = 200, 260
    y, x = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    img = np.repeat(np.clip(np.rint(smooth(x, y)), 0, 255).astype(np.uint8)[..., None], 3, 2)
    m = similarity(scale, 0.25, 0, 0)
    m[:, 2] = [32, 32] - m[:, :2] @ [w / 2, h / 2]  # the photo centre lands at the crop centre
    crop = warp_affine(img, m, 64)
    v, u = np.mgrid[0:64, 0:64] + 0.5
    src = transform_points(np.stack([u, v], -1).reshape(-1, 2), invert_affine(m)).reshape(64, 64, 2)
    want = smooth(src[..., 0], src[..., 1])
    assert np.abs(crop[..., 0] - want).max() < atol + 0.5


def test_points_move_with_pixels():
    """A bright blob at a known sub-pixel spot lands where transform_points says (intensity centroid)."""
    h, w, c = 120, 150, np.array([61.3, 47.8])
    y, x = np.mgrid[0:h, 0:w] + 0.5
    blob = 250 * np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2) / (2 * 3.0 ** 2))
    img = np.repeat(np.rint(blob).astype(np.uint8)[..., None], 3, 2)
    m = similarity(1.3, -0.4, 5.0, 60.0)
    crop = warp_affine(img, m, (128, 140))[..., 0].astype(float)
    v, u = np.mgrid[0:128, 0:140] + 0.5
    centroid = np.array([(crop * u).sum(), (crop * v).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, transform_points(c[None], m)[0], atol=0.05)


def test_render_in_a_larger_photo_aligns_back_onto_the_template(sfm):
    from occrecon.render import FaceRenderer

    with torch.no_grad():
        out = FaceRenderer(sfm)(sfm.layout.zeros(1))
    render = np.clip(np.rint(out.image[0].permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    lms = out.landmarks[0].double().numpy()
    k, off = 2, np.array([37, 90])  # photo = render enlarged 2x (nearest: x' = 2x exactly), pasted at off
    photo = np.zeros((600, 560, 3), np.uint8)
    photo[off[1]:off[1] + 448, off[0]:off[0] + 448] = render.repeat(k, 0).repeat(k, 1)
    crop, m = align_face(photo, five_from_68(lms * k + off))
    np.testing.assert_allclose(m, [[0.5, 0, -off[0] / 2], [0, 0.5, -off[1] / 2]], atol=2e-4)
    np.testing.assert_allclose(transform_points(five_from_68(lms * k + off), m), TEMPLATE_224, atol=2e-3)
    face = out.region[0, 0].numpy() > 0
    inner = face & np.roll(face, 2, 0) & np.roll(face, -2, 0) & np.roll(face, 2, 1) & np.roll(face, -2, 1)
    assert np.abs(crop.astype(int) - render.astype(int))[inner].mean() < 2.0


def test_padding_modes():
    img = np.full((40, 40, 3), 200, np.uint8)
    m = np.array([[1.0, 0, 20], [0, 1, 0]])  # the photo's left edge lands at crop x = 20
    zeros = warp_affine(img, m, 40)
    edge = warp_affine(img, m, 40, padding="edge")
    assert (zeros[:, :19] == 0).all() and (zeros[:, 21:] == 200).all()
    assert (edge == 200).all()


@pytest.mark.parametrize("padding", ["zeros", "edge"])
def test_torch_batch_version_matches_numpy(padding):
    rng = np.random.default_rng(1)
    imgs = rng.random((2, 90, 110, 3)).astype(np.float32)
    five = np.stack([transform_points(TEMPLATE_224, similarity(s, 0.0, 10 + s, 5)) * 0.4 for s in (1.0, 1.5)])
    crops, m = align_faces(torch.from_numpy(imgs).permute(0, 3, 1, 2), torch.from_numpy(five), size=48,
                           rotate=True, padding=padding)
    for i in range(2):
        mi = estimate_alignment(five[i], 48, rotate=True)
        np.testing.assert_allclose(m[i].numpy(), mi, atol=1e-5)
        want = warp_affine(imgs[i], mi, 48, padding=padding, antialias=False)
        np.testing.assert_allclose(crops[i].permute(1, 2, 0).numpy(), want, atol=1e-5)
    with pytest.raises(ValueError, match="five must be"):
        align_faces(torch.zeros(2, 3, 10, 10), torch.zeros(3, 5, 2))


def test_warp_affine_tensor_matches_numpy_per_image_and_shared():
    rng = np.random.default_rng(2)
    imgs = rng.random((3, 50, 60, 2)).astype(np.float32)
    ms = np.stack([similarity(s, a, 3.0 * s, -2.0) for s, a in ((1.1, 0.1), (0.95, -0.2), (1.0, 0.0))])
    t = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    per = warp_affine_tensor(t, ms, (40, 45))
    shared = warp_affine_tensor(t, ms[1], (40, 45), padding="edge")
    for i in range(3):
        np.testing.assert_allclose(per[i].permute(1, 2, 0).numpy(),
                                   warp_affine(imgs[i], ms[i], (40, 45), antialias=False), atol=1e-5)
        np.testing.assert_allclose(shared[i].permute(1, 2, 0).numpy(),
                                   warp_affine(imgs[i], ms[1], (40, 45), padding="edge", antialias=False), atol=1e-5)
    with pytest.raises(ValueError, match="m must be"):
        warp_affine_tensor(t, ms[:2], 10)
    with pytest.raises(ValueError, match="images must be"):
        warp_affine_tensor(torch.zeros(3, 10, 10), ms[0], 10)
    with pytest.raises(ValueError, match="padding"):
        warp_affine_tensor(t, ms[0], 10, padding="reflect")
