"""Unit tests of the ASGE method: patch rule, RMS energy, fixed projections, locality, modes."""
from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

from asge.backbone import ConvBlock, rms_pool2d
from asge.config import ConfigError, resolve_config
from asge.goodness import adaptive_mean, patch_count, patch_energy
from asge.methods import create_method, method_class

INFO = types.SimpleNamespace(name="cifar10", num_classes=10, in_channels=3, image_size=16)
SMALL = {"channels": [8, 8, 16, 32], "pool_layers": [2, 4], "seed": 0}


def make(**over):
    cfg = resolve_config("asge", "cifar10", [SMALL, over], method_class("asge"))
    torch.manual_seed(0)
    return create_method("asge", cfg, INFO)


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("c_l, c_last, hw, alpha, expected", [
    (128, 512, 32, 1.0, 4),    # shallow layer: (512/128)^1 = 4 patches per side
    (512, 512, 4, 1.0, 1),     # last layer: one patch
    (128, 512, 32, 0.0, 1),    # alpha = 0: one global goodness per channel
    (128, 512, 32, 0.5, 2),    # sqrt(4) = 2
    (64, 512, 32, 2.0, 32),    # (8)^2 = 64, clamped to the map side 32
    (256, 512, 8, 1.0, 2),
    (96, 512, 16, 1.0, 5),     # 5.33 rounds to 5 (non-divisible map: adaptive regions)
])
def test_patch_rule(c_l, c_last, hw, alpha, expected):
    assert patch_count(c_l, c_last, hw, alpha) == expected


def test_min_patches_lifts_deep_layers():
    assert patch_count(512, 512, 4, 1.0, min_patches=2) == 2
    assert patch_count(512, 512, 1, 1.0, min_patches=2) == 1  # never more than the map allows


def test_patch_energy_sum_and_mean_on_uneven_regions():
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5)
    p = 2
    s = patch_energy(x, p, "sum").reshape(2, p, p)
    m = patch_energy(x, p, "mean").reshape(2, p, p)
    # adaptive regions of a 5-wide map in 2 parts: rows/cols [0,3) and [2,5)
    ref = (x[0, :, 0:3, 2:5] ** 2).sum(dim=(1, 2))
    assert torch.allclose(s[:, 0, 1], ref)
    assert torch.allclose(m[:, 0, 1], ref / 9)


@pytest.mark.parametrize("hw,p", [(5, 2), (7, 3), (8, 4), (3, 3)])
def test_matrix_form_of_adaptive_pooling_matches_torch(hw, p):
    # the deterministic-CUDA path (adaptive pooling has no deterministic CUDA backward)
    x = torch.randn(2, 3, hw, hw, requires_grad=True)
    ref = F.adaptive_avg_pool2d(x, p)
    out = adaptive_mean(x, p, deterministic=True)
    assert torch.allclose(out, ref, atol=1e-6)
    w = torch.randn_like(ref)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    (g_out,) = torch.autograd.grad((out * w).sum(), x)
    assert torch.allclose(g_out, g_ref, atol=1e-6)


def test_rms_pooling_preserves_energy():
    x = torch.rand(3, 4, 8, 8)
    before = x.square().sum(dim=(2, 3))
    after = rms_pool2d(x).square().sum(dim=(2, 3)) * 4  # window area 2x2
    assert torch.allclose(before, after, rtol=1e-5)
    # and per patch: the patch goodness (mean of squares) is unchanged by RMS pooling
    assert torch.allclose(patch_energy(x, 2, "mean"), patch_energy(rms_pool2d(x), 2, "mean"), rtol=1e-5)


def test_rms_pooling_of_zero_windows_is_zero_with_finite_gradient():
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    out = rms_pool2d(x)
    assert (out == 0).all()  # no artificial floor in the goodness of silent patches
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_rms_pooling_gradient_matches_autograd_of_the_formula():
    x = torch.rand(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)  # odd side: a row is dropped
    assert torch.autograd.gradcheck(rms_pool2d, (x,))
    ref = torch.nn.functional.avg_pool2d(x.square(), 2).sqrt()
    assert torch.allclose(rms_pool2d(x), ref)


@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool_block_forward_matches_relu_then_pool(channels_last):
    """forward() pools before the ReLU (cheaper); values and gradients equal ReLU-then-pool."""
    torch.manual_seed(0)
    block = ConvBlock(3, 8, 3, "max", "none", 0)
    x = torch.randn(4, 3, 9, 9)  # odd size: the dropped last row/column must agree too
    if channels_last:
        block, x = block.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    grads = []
    for out in (block(x), block.parts(x)[1]):
        block.zero_grad()
        (out * torch.linspace(-1, 2, out.numel()).view_as(out)).sum().backward()
        grads.append((out.detach(), block.conv.weight.grad.clone(), block.conv.bias.grad.clone()))
    assert grads[0][0].shape == (4, 8, 4, 4) and (grads[0][0] > 0).any()
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_projection_fixed_and_seeded():
    m = make()
    before = {k: v.clone() for k, v in m.state_dict().items() if k.startswith("heads")}
    assert before, "projection weights must be saved in the state dict"
    assert not any(k.startswith("heads") for k, _ in m.named_parameters())
    opt = torch.optim.AdamW(m.param_groups(), lr=1e-2)
    for s in range(3):
        opt.zero_grad()
        m.train_step(*batch(seed=s), epoch=0)
        opt.step()
    for k, v in m.state_dict().items():
        if k.startswith("heads"):
            assert torch.equal(v, before[k]), k
    # same seed, same projections; another seed, other projections
    assert torch.equal(make().heads[0].weight, m.heads[0].weight)
    assert not torch.equal(make(seed=1).heads[0].weight, m.heads[0].weight)


def test_trainable_projection_ablation_learns_and_stays_local():
    """projection_trainable (an ablation, not ASGE) trains each head with its own block only."""
    m = make(projection_trainable=True)
    w0 = m.heads[0].weight.detach().clone()
    assert torch.equal(w0, make().heads[0].weight)  # same start as the fixed projection
    opt = torch.optim.AdamW(m.param_groups(), lr=1e-2)
    opt.zero_grad()
    m.train_step(*batch(), epoch=0)
    assert m.heads[1].weight.grad is not None and m.blocks[0].conv.weight.grad is not None
    opt.step()
    assert not torch.equal(m.heads[0].weight, w0)


@pytest.mark.parametrize("init", ["gaussian", "orthogonal", "rademacher"])
def test_projection_inits_have_unit_row_norm_scale(init):
    w = make(projection_init=init).heads[0].weight
    assert w.shape == (10, 8 * 4 * 4)  # C_1 * P_1^2 with P_1 = 32/8 = 4
    assert torch.allclose(w.norm(dim=1).mean(), torch.tensor(1.0), atol=0.2)


@pytest.mark.parametrize("trainable", [False, True])
def test_no_gradient_crosses_layers(trainable):
    """The loss of layer k reaches exactly the parameters of block k (and head k), nothing else."""
    m = make(projection_trainable=trainable)
    x, y = batch()
    losses, h = [], x
    for i in range(len(m.blocks)):
        logits, out = m._layer(i, h.detach())
        losses.append(torch.nn.functional.cross_entropy(logits, y))
        h = out
    params = list(m.named_parameters())
    for k, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True, retain_graph=True)
        for (name, _), g in zip(params, grads):
            owner = int(name.split(".")[1])
            if owner == k:
                assert g is not None and g.abs().sum() > 0, name
            else:
                assert g is None or g.abs().sum() == 0, f"loss of layer {k + 1} reached {name}"


def test_fused_and_per_layer_modes_agree():
    torch.use_deterministic_algorithms(True)
    try:
        a, b = make(execution="per_layer"), make(execution="fused")
        b.load_state_dict(a.state_dict())
        x, y = batch()
        sa, sb = a.train_step(x, y, 0), b.train_step(x, y, 0)
        assert torch.allclose(sa.layer_loss, sb.layer_loss)
        for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
            assert torch.allclose(pa.grad, pb.grad, atol=1e-6), n
    finally:
        torch.use_deterministic_algorithms(False)


def test_strategies_on_known_logits():
    m = make(fusion_from=2)
    # three samples, 4 layers, 10 classes; layer 1 votes class 0, layers 2-4 as below
    scores = [torch.zeros(3, 10) for _ in range(4)]
    scores[0][:, 0] = 100.0
    scores[1][:, 1] = 5.0
    scores[2][:, 2] = 5.0
    scores[3][:, 1] = 5.0
    assert (m.predict(scores, "last", best=0).argmax(1) == 1).all()
    assert (m.predict(scores, "best", best=2).argmax(1) == 2).all()
    fused = m.predict(scores, "fusion", best=0)
    assert (fused.argmax(1) == 1).all()  # layers 2 and 4 agree; layer 1 is not fused
    assert torch.allclose(fused.sum(1), torch.full((3,), 3.0))  # sum of 3 softmaxes


def test_inference_params_shrink_with_best_layer():
    m = make()
    full, first = m.inference_params("last", 3), m.inference_params("best", 0)
    assert first < full
    block0 = sum(p.numel() for p in m.blocks[0].parameters())
    assert first == block0 + m.heads[0].weight.numel() + m.heads[0].bias.numel()


def test_goodness_distributions_cover_pooling_layers():
    m = make()
    d = m.goodness_distributions(batch()[0])
    assert {"layer2_origin", "layer2_rms", "layer2_avg", "layer2_max", "layer4_rms"} <= set(d)
    # RMS keeps the patch energy of the un-pooled activation; max can only raise it
    assert torch.allclose(d["layer2_rms"], d["layer2_origin"], rtol=1e-4, atol=1e-6)
    assert (d["layer2_max"] >= d["layer2_avg"] - 1e-6).all()


@pytest.mark.parametrize("over, key", [
    ({"alpha": -1.0}, "alpha"),
    ({"goodness_reduction": "max"}, "goodness_reduction"),
    ({"fusion_from": 9}, "fusion_from"),
    ({"pool_layers": [7]}, "pool_layers"),
    ({"alhpa": 1.0}, "alpha"),  # misspelt key: the message suggests the right one
])
def test_bad_asge_config_names_the_key(over, key):
    with pytest.raises(ConfigError, match=key):
        make(**over)
