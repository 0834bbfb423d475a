"""The fitting-engine teacher term: closed forms, gradients, and its geometry under the data augmentation (camera
roll is an image rotation; a mirrored symmetric face relabelled by the mirror map is itself)."""
from __future__ import annotations

import math

import pytest
import torch

from occrecon.losses import teacher_loss, teacher_targets
from occrecon.render import PerspectiveCamera


def test_closed_form_weights_and_validity():
    p = torch.zeros(2, 3, 2)
    t = torch.zeros(2, 3, 2)
    t[0, 0] = torch.tensor([3.0, 4.0])  # distance 5 on vertex 0 of face 0
    t[1] = float("nan")  # face 1 has no teacher
    w = torch.tensor([1.0, 1.0, 2.0])
    per = teacher_loss(p, t, 10.0, weights=w, valid=torch.tensor([True, False]), reduction="none")
    assert torch.allclose(per, torch.tensor([25.0 / (4 * 100), 0.0]))
    assert teacher_loss(p, t, 10.0, weights=w, valid=torch.tensor([True, False])).item() == pytest.approx(25 / 400)
    x = p.clone().requires_grad_()
    teacher_loss(x, t, 10.0, valid=torch.tensor([True, False])).backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all()  # no NaN from the missing teacher
    assert teacher_loss(p, t, 10.0, valid=torch.tensor([False, False])).item() == 0.0
    with pytest.raises(ValueError, match="weights"):
        teacher_loss(p, t, 10.0, weights=torch.zeros(3))
    with pytest.raises(ValueError, match="image_size"):
        teacher_loss(p, t, 0.0)
    with pytest.raises(ValueError, match="targets"):
        teacher_loss(p, t[:, :2], 10.0)


def test_gradcheck_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 5, 2, dtype=torch.float64)
    w = torch.rand(5, dtype=torch.float64) + 0.1
    assert torch.autograd.gradcheck(lambda a: teacher_loss(a, t, 7.0, weights=w), (x,))
    # and through the targets' affine: the loss does not pass gradients into the (constant) teacher
    y = t.clone().requires_grad_()
    assert not teacher_loss(x.detach(), teacher_targets(y, torch.eye(2, 3, dtype=torch.float64)), 7.0).requires_grad


def test_camera_roll_is_an_image_rotation_of_the_targets():
    """Rolling the face about the optical axis by α moves its projection by the image rotation α about the principal
    point: the teacher's vertices rotated by that affine are the rolled face's, so the loss is 0."""
    torch.manual_seed(1)
    cam = PerspectiveCamera(focal=500.0, image_size=(128, 128))
    pts = torch.randn(1, 50, 3, dtype=torch.float64) * 0.1 + torch.tensor([0.02, -0.01, -1.5], dtype=torch.float64)
    a = math.radians(12.0)
    rz = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]], dtype=torch.float64)
    rolled = pts @ rz.T
    cx, cy = cam.principal_point
    # camera y is up, image v is down: a camera rotation by +α is an image rotation by −α
    c, s = math.cos(-a), math.sin(-a)
    aff = torch.tensor([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]], dtype=torch.float64)
    t = teacher_targets(cam.project(pts), aff)
    assert teacher_loss(cam.project(rolled), t, 128).item() < 1e-20
    assert teacher_loss(cam.project(pts), t, 128).item() > 1e-4  # the un-rolled face is not what the photo shows


def test_a_mirrored_symmetric_face_relabelled_is_itself():
    torch.manual_seed(2)
    half = torch.randn(20, 3, dtype=torch.float64) * 0.1
    half[:, 0] = half[:, 0].abs() + 0.01
    pts = torch.cat([half, half * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)])[None]
    pts = pts + torch.tensor([0.0, 0.0, -1.5], dtype=torch.float64)
    mirror = torch.cat([torch.arange(20, 40), torch.arange(0, 20)])
    cam = PerspectiveCamera(focal=500.0, image_size=(128, 128))
    p = cam.project(pts)
    flip = torch.tensor([[-1.0, 0.0, 128.0], [0.0, 1.0, 0.0]], dtype=torch.float64)  # x -> W - x
    t = teacher_targets(p, flip, torch.tensor([True]), mirror)
    assert torch.allclose(t, p, atol=1e-9)  # the mirror image of a symmetric face, labels swapped back
    assert not torch.allclose(teacher_targets(p, flip), p)  # without the relabelling it is not
    with pytest.raises(ValueError, match="mirror"):
        teacher_targets(p, flip, torch.tensor([True]))


def test_skin_mask_is_the_ycbcr_rule():
    from occrecon.losses import skin_mask

    colours = torch.tensor([[224, 172, 150], [141, 85, 36], [30, 60, 200], [40, 200, 40], [128, 128, 128],
                            [250, 250, 250]], dtype=torch.float64) / 255  # two skin tones, blue, green, grey, white
    img = colours.T.reshape(1, 3, 1, 6)
    r, g, b = colours.T * 255
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    expect = ((cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)).double()
    assert torch.equal(skin_mask(img)[0, 0, 0], expect)
    assert expect.tolist() == [1, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="image"):
        skin_mask(torch.zeros(1, 1, 2, 2))
