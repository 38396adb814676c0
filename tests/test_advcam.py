"""AdvCAM engines: the fast engine against the literal reference, Grad-CAM identities, paper properties."""
import pytest
import torch
import torch.nn.functional as F
from conftest import TinyCAM, flip_pairs

from advcam.advcam import (
    AdvCAM,
    _GradCAMHooks,
    _reference_gradcam,
    advcam_image,
    climb_fast,
    climb_reference,
    gradcam_closed_form,
    input_grad_only,
    iterations_for_scale,
    scale_order,
)
from advcam.nets.resnet50_cam import CAM


def _random_tiny(seed=0, num_classes=4):
    torch.manual_seed(seed)
    return TinyCAM(num_classes).eval()


@pytest.mark.slow
def test_fast_equals_reference_on_resnet50_several_classes():
    torch.manual_seed(0)
    model = CAM().eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.05)
    img = torch.randn(3, 32, 48)
    scales = (1.0, 0.5)
    ref = advcam_image(model, flip_pairs(img, scales), scales, [2, 11], (32, 48), adv_iter=3, engine="reference")
    fast = advcam_image(model, flip_pairs(img, scales), scales, [2, 11], (32, 48), adv_iter=3, engine="fast")
    for r, f in zip(ref, fast, strict=True):
        assert r.shape == f.shape
        assert (r - f).abs().max() <= 1e-4
    assert ref[0].shape == (2, 8, 12) and ref[1].shape == (2, 32, 48)


def test_fast_equals_reference_many_steps_tiny_net():
    model = _random_tiny(1, num_classes=5)
    img = torch.randn(3, 64, 80)
    scales = (1.0, 0.5)
    kw = dict(adv_iter=12, xi=0.08, lam=7.0, tau=0.5)
    ref = advcam_image(model, flip_pairs(img, scales), scales, [0, 3, 4], (64, 80), engine="reference", **kw)
    fast = advcam_image(model, flip_pairs(img, scales), scales, [0, 3, 4], (64, 80), engine="fast", **kw)
    for r, f in zip(ref, fast, strict=True):
        assert (r - f).abs().max() <= 1e-4


def test_gradcam_closed_form_identity():
    """The reference's hooked Grad-CAM of this head equals ReLU(S_c) * P_b / N (one scalar per copy)."""
    model = _random_tiny(2)
    x = torch.randn(2, 3, 64, 64)
    for c in range(4):
        hooks = _GradCAMHooks(model.stage4)
        xg = x.clone().requires_grad_(True)
        S = model(xg, separate=True)
        F.relu(S).sum((2, 3))[:, c].sum().backward()
        A_hooks = _reference_gradcam(hooks)[:, 0].detach()
        hooks.remove()
        n_pos = (model.classifier.weight[c].flatten() > 0).sum()
        A_closed = gradcam_closed_form(S[None, :, c].detach(), n_pos[None])[0]
        assert torch.allclose(A_hooks, A_closed, atol=1e-6, rtol=1e-5)
        # it is ReLU(S_c) times a per-copy constant
        ratio = A_closed / F.relu(S[:, c]).detach().clamp_min(1e-12)
        for b in range(2):
            vals = ratio[b][S[b, c] > 0]
            assert vals.numel() == 0 or torch.allclose(vals, vals[0].expand_as(vals), rtol=1e-5)


def test_one_iteration_is_the_clean_gradcam():
    model = _random_tiny(3)
    x = torch.randn(2, 3, 64, 64)
    with input_grad_only(model):
        acc = climb_fast(model, x[None], [1], 1, 0.08, 7.0, 0.5)[0]
    with torch.no_grad():
        S = model(x, separate=True)
    n_pos = (model.classifier.weight[1].flatten() > 0).sum()
    A = gradcam_closed_form(S[None, :, 1], n_pos[None])[0]
    assert torch.allclose(acc, A[0] + A[1].flip(-1), atol=1e-6)
    # and the reference engine agrees
    ref = climb_reference(model, x, 1, 1, 0.08, 7.0, 0.5)
    assert torch.allclose(acc, ref, atol=1e-6)


def test_climbing_raises_the_target_logit(trained_tiny_cam, monkeypatch):
    from conftest import square_images

    import advcam.advcam as engine
    model = trained_tiny_cam
    x, y = square_images(6, seed=5)
    iterates = []  # x_1 .. x_T, read from the literal engine's step function
    step = engine.climb_step
    monkeypatch.setattr(engine, "climb_step", lambda xx, g, xi: iterates.append(step(xx, g, xi)) or iterates[-1])
    for i in range(len(x)):
        c = int(torch.nonzero(y[i])[0, 0])
        pair = torch.stack([x[i], x[i].flip(-1)])
        iterates.clear()
        climb_reference(model, pair, c, 9, 0.08, 7.0, 0.5)
        with torch.no_grad():
            before = model.logits(pair)[:, c].sum()
            after = model.logits(iterates[-1][0])[:, c].sum()
        assert after > before


def test_restricting_mask_holds_back_high_regions(trained_tiny_cam):
    from conftest import square_images
    model = trained_tiny_cam
    x, y = square_images(8, seed=7)
    smaller = 0
    for i in range(len(x)):
        c = int(torch.nonzero(y[i])[0, 0])
        x0 = torch.stack([x[i], x[i].flip(-1)])[None]
        T = 10
        with input_grad_only(model):
            R0 = climb_fast(model, x0, [c], 1, 0.08, 0.0, 0.5)[0]
            M0 = R0 / R0.max() > 0.5
            change = {}
            for lam in (0.0, 7.0):
                acc = climb_fast(model, x0, [c], T, 0.08, lam, 0.5)[0]
                change[lam] = (acc - T * R0)[M0].abs().sum()
        smaller += int(change[7.0] < change[0.0])
    assert smaller >= 6  # the restriction holds back the already-strong region on (nearly) every image


def test_scale_schedule():
    assert [iterations_for_scale(s, 27) for s in (1.0, 0.5, 1.5, 2.0)] == [27, 13, 27, 27]
    assert iterations_for_scale(0.5, 8) == 5 and iterations_for_scale(0.5, 4) == 4
    assert scale_order((1.0, 0.5, 1.5, 2.0)) == [1, 0, 2, 3]


def test_library_api_closed_form_matches_engine():
    model = _random_tiny(4)
    imgs = torch.randn(3, 3, 48, 64)
    targets = [0, 2, 3]
    with AdvCAM(model, "stage4", adv_iter=5, flip=True) as cam:
        assert cam.closed_form
        maps = cam(imgs, targets)
    assert maps.shape == (3, 3, 4)
    for i, c in enumerate(targets):
        pair = torch.stack([imgs[i], imgs[i].flip(-1)])
        ref = climb_reference(model, pair, c, 5, 0.08, 7.0, 0.5)
        assert torch.allclose(maps[i], ref, atol=1e-5)


def test_chunked_batches_give_the_same_maps():
    model = _random_tiny(5, num_classes=5)
    img = torch.randn(3, 48, 64)
    args = (flip_pairs(img, (1.0,)), (1.0,), [0, 1, 3, 4], (48, 64))
    whole = advcam_image(model, *args, adv_iter=4)
    chunked = advcam_image(model, *args, adv_iter=4, max_batch_pixels=2 * 48 * 64 * 3)  # chunks of 3 and 1
    for a, b in zip(whole, chunked, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_image_without_positive_class_gives_empty_maps():
    from advcam.cam import plain_cam
    model = _random_tiny(6, num_classes=20)
    pairs = flip_pairs(torch.randn(3, 32, 48), (1.0, 0.5))
    for cam, high in (plain_cam(model, pairs, torch.zeros(0, dtype=torch.long), (32, 48)),
                      advcam_image(model, pairs, (1.0, 0.5), [], (32, 48), adv_iter=2)):
        assert cam.shape == (0, 8, 12) and high.shape == (0, 32, 48)
