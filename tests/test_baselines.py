"""Unit tests of the baselines: FF (label planes, negatives, batched label trials), CwC-FF
(group goodness, CwC loss, channel constraint, ILT, superclasses, predictors) and BP, and
that every run file in config/runs/{ff,cwc,bp} resolves and builds."""
from __future__ import annotations

import math
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from asge.config import ConfigError, load_yaml, resolve_config
from asge.methods import create_method, method_class
from baselines.cwc import cwc_loss, group_goodness
from baselines.ff import hard_wrong_labels, label_patterns, label_planes, wrong_labels

RUNS = Path(__file__).resolve().parent.parent / "config" / "runs"
INFO10 = types.SimpleNamespace(name="cifar10", num_classes=10, in_channels=3, image_size=16)
SMALL = {
    "ff": {"channels": [8, 8, 16], "pool_layers": [2, 3]},
    "bp": {"channels": [8, 8, 16], "pool_layers": [2, 3]},
    "cwc": {"channels": [10, 20, 30, 40], "groups": [1, 10, 1, 10], "pool_layers": [2, 4]},
}


def make(name, info=INFO10, dataset="cifar10", **over):
    cfg = resolve_config(name, dataset, [SMALL[name], over], method_class(name))
    torch.manual_seed(0)
    return create_method(name, cfg, info)


def batch(n=5, info=INFO10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, info.in_channels, info.image_size, info.image_size, generator=g)
    return x, torch.randint(0, info.num_classes, (n,), generator=g)


# --- CwC-FF ---------------------------------------------------------------------------
def test_cwc_group_goodness_and_loss_by_hand():
    # a 2-class layer with 4 channels (2 per class) on a 2x2 map
    h = torch.zeros(1, 4, 2, 2)
    h[0, 0] = 1.0                  # class 0, channel 0: four ones
    h[0, 1, 0, 0] = 2.0            # class 0, channel 1: a single 2
    h[0, 2, 1, 1] = 3.0            # class 1, channel 2: a single 3
    h[0, 3] = -0.5                 # class 1, channel 3: signs do not matter
    g = group_goodness(h, 2)
    g0 = (4 * 1.0 + 4.0) / 8       # mean of y^2 over 2 channels x 4 positions
    g1 = (9.0 + 4 * 0.25) / 8
    assert torch.allclose(g, torch.tensor([[g0, g1]]))
    for y, (gy, other) in enumerate([(g0, g1), (g1, g0)]):
        expected = -math.log(math.exp(gy) / (math.exp(g0) + math.exp(g1)))
        assert cwc_loss(g, torch.tensor([y])).item() == pytest.approx(expected, rel=1e-6)


def test_cwc_groups_are_contiguous_channels():
    h = torch.zeros(2, 6, 3, 3)
    h[0, 4:6] = 1.0                # sample 0 lights up the last group of 3 classes
    h[1, 0:2] = 2.0                # sample 1 the first
    g = group_goodness(h, 3)
    assert g.shape == (2, 3)
    assert g.argmax(1).tolist() == [2, 0]
    assert g[1, 0].item() == pytest.approx(4.0)


@pytest.mark.parametrize("over, words", [
    ({"channels": [10, 20, 30, 45], "groups": [1, 1, 1, 1]}, ["'channels'", "45", "10 classes"]),
    ({"channels": [15, 20, 30, 40], "groups": [1, 1, 1, 1]}, ["'channels'", "15", "10 classes"]),
    ({"channels": [10, 20, 30, 40], "groups": [1, 7, 1, 10]}, ["'groups'", "groups=7"]),
    ({"groups": [1, 10, 1]}, ["'groups'"]),
    ({"ilt_windows": [[0, 2], [0, 3]]}, ["'ilt_windows'"]),
    ({"ilt_windows": [[2, 1], [0, 3], [0, 3], [0, 3]]}, ["'ilt_windows'"]),
    ({"superclass_layers": 4}, ["'superclass_layers'"]),
    ({"superclass_layers": 1, "superclasses": 3}, ["'superclasses'"]),
])
def test_cwc_refuses_bad_architectures(over, words):
    with pytest.raises(ConfigError) as e:
        make("cwc", **over)
    for w in words:
        assert w in str(e.value)


def test_cwc_channel_check_uses_the_real_class_count():
    # resolve_config alone refuses the 10-class CFSE net on CIFAR-100 (100 classes), naming the key
    with pytest.raises(ConfigError, match=r"'channels'.*\[20, 80, 240, 480\].*100 classes"):
        resolve_config("cwc", "cifar100", [], method_class("cwc"))
    # a data set unknown to the catalog: the same check runs when the model is built
    info = types.SimpleNamespace(name="toy", num_classes=4, in_channels=1, image_size=8)
    cfg = resolve_config("cwc", "toy", [{"channels": [6], "groups": [1], "pool_layers": []}], method_class("cwc"))
    with pytest.raises(ConfigError, match=r"'channels'.*6 channels.*4 classes"):
        create_method("cwc", cfg, info)


def test_cwc_ilt_window_freezes_layers_and_head():
    m = make("cwc", ilt_windows=[[0, 1], [1, 2], [0, 2], [0, 2]], sf_start_epoch=1)
    x, y = batch()
    stats = m.train_step(x, y, epoch=0)
    assert torch.isfinite(stats.layer_loss).all() and stats.layer_loss.shape == (5,)
    assert all(p.grad is not None for p in m.layers[0].parameters())
    assert all(p.grad is None for p in m.layers[1].parameters())   # outside [1, 2)
    assert all(p.grad is None for p in m.head.parameters())        # Sf head starts at epoch 1
    assert stats.extra["trained"].tolist() == [5, 0, 5, 5, 0]
    m.zero_grad(set_to_none=True)
    m.train_step(x, y, epoch=1)
    assert all(p.grad is None for p in m.layers[0].parameters())   # window [0, 1) is over
    assert all(p.grad is not None for p in m.layers[1].parameters())
    assert all(p.grad is not None for p in m.head.parameters())


@pytest.mark.parametrize("refresh", [True, False])
def test_cwc_bn_refresh_updates_running_stats_from_the_new_weights(refresh):
    """bn_refresh: after the optimiser step, layer 1's running mean takes one more momentum-0.1
    step towards the batch mean computed with the *updated* conv weights (the official loop)."""
    m = make("cwc", bn_refresh=refresh)
    x, y = batch(n=8)
    opt = torch.optim.Adam(m.param_groups(), lr=0.01)
    m.train()
    m.train_step(x, y, epoch=0)
    opt.step()
    bn = m.layers[0].bn
    before = bn.running_mean.clone()
    with torch.no_grad():
        pre_bn = torch.relu(m.layers[0].conv(x))  # layer 1 does not pool
    m.after_step(x, y, epoch=0)
    expected = 0.9 * before + 0.1 * pre_bn.mean(dim=(0, 2, 3)) if refresh else before
    assert torch.allclose(bn.running_mean, expected, atol=1e-6)
    assert bn.num_batches_tracked == (2 if refresh else 1)


def test_cwc_no_gradient_crosses_layers():
    m = make("cwc")
    x, y = batch()
    m.train_step(x, y, 0)
    full = {n: p.grad.clone() for n, p in m.named_parameters()}
    # layer k alone, from the detached output of the layers before it, gives the same gradient
    h = x
    for k, layer in enumerate(m.layers):
        m.zero_grad(set_to_none=True)
        site, out = layer.parts(h.detach())
        cwc_loss(group_goodness(site, 10), y).backward()
        for n, p in layer.named_parameters():
            assert torch.allclose(p.grad, full[f"layers.{k}.{n}"], atol=1e-6), (k, n)
        h = out.detach()


def test_cwc_superclass_layers():
    info = types.SimpleNamespace(name="toy", num_classes=10, in_channels=3, image_size=8)
    m = make("cwc", info, dataset="toy", channels=[5, 10, 20], groups=[1, 5, 1], pool_layers=[2],
             superclass_layers=2, superclasses=5)
    assert m.class_groups == [5, 5, 10]
    x, y = batch(6, info)
    assert torch.equal(m._targets(0, y), y // 2)
    assert torch.equal(m._targets(2, y), y)
    stats = m.train_step(x, y, 0)
    assert torch.isfinite(stats.layer_loss).all()
    m.eval()
    scores = m.layer_scores(x)
    assert [s.shape for s in scores] == [(6, 10)] * 4
    # a superclass readout gives both fine classes of a superclass the same score
    assert torch.equal(scores[0][:, 0::2], scores[0][:, 1::2])


def test_cwc_predictors_and_inference_cost():
    m = make("cwc")
    x, y = batch()
    m.train_step(x, y, 0)
    m.eval()
    scores = m.layer_scores(x)
    assert m.readout_names == ["layer1", "layer2", "layer3", "layer4", "sf_head"]
    assert torch.equal(m.predict(scores, "ga", 0), scores[3])
    assert torch.equal(m.predict(scores, "sf", 0), scores[4])
    # GA needs the conv layers only: a truncated pass still predicts with the last layer
    ga_scores = m.layer_scores(x, upto=m.inference_layers("ga", 0))
    assert len(ga_scores) == 4 and torch.equal(m.predict(ga_scores, "ga", 0), scores[3])
    head = sum(p.numel() for p in m.head.parameters())
    assert m.inference_params("sf", 0) - m.inference_params("ga", 0) == head
    assert m.head.in_features == 40 * 4 * 4  # flattened last-layer output (sf_input: flatten)
    assert make("cwc", sf_input="gap").head.in_features == 40


def test_cwc_goodness_site():
    m = make("cwc", goodness_site="before_norm")
    x, _ = batch()
    m.eval()
    layer = m.layers[0]
    site, out = layer.parts(x)
    assert torch.equal(site, F.relu(layer.conv(x)))
    assert torch.equal(out, layer.bn(site))
    m2 = make("cwc")
    m2.eval()
    site2, out2 = m2.layers[0].parts(x)
    assert torch.equal(site2, out2)  # the default takes goodness after BatchNorm (official code)


def test_cwc_sf_lr_gives_the_head_its_own_rate():
    groups = make("cwc", sf_optimizer="run").param_groups()
    assert "lr" not in groups[1]  # default: the run's lr
    groups = make("cwc", sf_optimizer="run", sf_lr=0.001).param_groups()
    assert groups[1]["lr"] == 0.001 and "lr" not in groups[0]
    with pytest.raises(ConfigError, match="sf_lr"):
        make("cwc", sf_lr=0.0)


def test_cwc_sf_head_official_sgd_and_double_softmax():
    """Default head: its own plain SGD at sf_lr, stepped in after_step (not by the run's optimiser),
    trained on cross-entropy of softmax(logits), as the official Softmax_CF."""
    m = make("cwc", sf_lr=0.01)
    assert all(p is not q for g in m.param_groups() for p in g["params"] for q in m.head.parameters())
    x, y = batch(n=8)
    stats = m.train_step(x, y, epoch=0)
    with torch.no_grad():
        h = x
        for layer in m.layers:
            h = layer(h)
        logits = m.head(h.flatten(1))
    assert stats.layer_loss[-1].item() == pytest.approx(F.cross_entropy(logits.softmax(1), y).item(), rel=1e-5)
    w, g = m.head.weight.detach().clone(), m.head.weight.grad.clone()
    m.after_step(x, y, epoch=0)
    assert torch.allclose(m.head.weight, w - 0.01 * g, atol=1e-7)   # plain SGD, lr 0.01
    assert m.head.weight.grad is None                               # cleared for the next step
    ce = make("cwc", sf_loss="ce").train_step(x, y, epoch=0)
    assert ce.layer_loss[-1].item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-4)


@pytest.mark.parametrize("dataset, mean, std", [
    ("mnist", None, None),
    ("fashionmnist", [0.5], [0.5]),
    ("cifar10", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ("cifar100", [0.5074, 0.4867, 0.4411], [0.2011, 0.1987, 0.2025]),
])
def test_cwc_run_files_use_the_official_input_normalisation(dataset, mean, std):
    from asge.data.catalog import dataset_info
    from asge.train import resolve

    cfg = resolve("cwc", dataset)
    info = dataset_info(dataset, cfg)
    assert cfg["input_mean"] == mean and cfg["input_std"] == std
    if mean is not None:
        assert info.mean == tuple(mean) and info.std == tuple(std)
    with pytest.raises(ConfigError, match="input_std"):
        resolve("cwc", dataset, overrides=["input_std=[0.5, 0.5]"])


# --- FF -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["fourier", "random"])
@pytest.mark.parametrize("n, size", [(10, 28), (10, 32), (10, 7), (100, 32), (100, 4)])
def test_ff_label_patterns_distinct_and_over_the_whole_image(kind, n, size):
    if (kind, n, size) == ("fourier", 100, 4):
        pytest.skip("100 gratings cannot be told apart on a 4x4 map (16 pixels); deep maps use `random`")
    p = label_patterns(kind, n, size, size)
    assert p.shape == (n, size, size)
    assert torch.allclose(p.square().mean(dim=(1, 2)), torch.ones(n), atol=1e-4)  # unit RMS
    flat = p.flatten(1)
    dist = torch.cdist(flat, flat) / size                      # RMS distance between two patterns
    off = dist[~torch.eye(n, dtype=torch.bool)]
    assert off.min() > 0.3, f"two classes' patterns nearly coincide (RMS distance {off.min():.3f})"
    half = size // 2                                           # every quadrant carries label energy
    for q in (p[:, :half, :half], p[:, :half, half:], p[:, half:, :half], p[:, half:, half:]):
        assert (q.square().mean(dim=(1, 2)) > 0.1).all()
    assert torch.equal(label_patterns(kind, n, size, size), p)  # fixed: the same for every call


def test_ff_label_encoding_superimposes_the_class_pattern():
    m = make("ff", label_encoding="fourier", label_amplitude=0.5)
    x, _ = batch(4)
    y = torch.tensor([3, 0, 9, 3])
    inp = m.with_labels(x, y)
    assert inp.shape == x.shape and m.blocks[0].conv.in_channels == 3  # no extra input channels
    pats = label_patterns("fourier", 10, 16, 16) * 0.5
    for b, lab in enumerate(y.tolist()):
        assert torch.allclose(inp[b] - x[b], pats[lab].expand(3, -1, -1), atol=1e-6)
    assert not torch.allclose(inp[1], m.with_labels(x, torch.tensor([3, 1, 9, 3]))[1])


def test_ff_label_planes_one_hot_per_sample():
    y = torch.tensor([3, 0, 9, 3])
    planes = label_planes(y, 10, 5, 7)
    assert planes.shape == (4, 10, 5, 7)
    for b, lab in enumerate(y.tolist()):
        assert (planes[b, lab] == 1).all()
        assert planes[b].sum() == 5 * 7  # exactly one plane is on
    m = make("ff", label_encoding="planes")
    x, _ = batch(4)
    inp = m.with_labels(x, y)
    assert inp.shape == (4, 3 + 10, 16, 16)
    assert torch.equal(inp[:, :3], x) and torch.equal(inp[:, 3:], label_planes(y, 10, 16, 16))
    assert m.blocks[0].conv.in_channels == 13


def test_ff_wrong_labels_never_true_and_uniform():
    torch.manual_seed(0)
    n_cls, draws = 10, 90_000
    y = torch.randint(0, n_cls, (draws,))
    neg = wrong_labels(y, n_cls)
    assert (neg != y).all() and neg.min() >= 0 and neg.max() < n_cls
    # for a fixed true label, the 9 others come out equally often
    y3 = torch.full((draws,), 3)
    counts = torch.bincount(wrong_labels(y3, n_cls), minlength=n_cls).float()
    assert counts[3] == 0
    others = torch.cat([counts[:3], counts[4:]])
    assert ((others - draws / 9).abs() < 0.05 * draws / 9).all(), counts


def test_ff_hard_negatives_follow_the_goodness_and_are_never_true():
    torch.manual_seed(0)
    scores = torch.zeros(20_000, 4)
    scores[:, 2] = math.log(8.0)                # label 2 is 8x as likely as 1 or 3
    y = torch.zeros(20_000, dtype=torch.long)   # the true label (0) has no chance even if it scores high
    scores[:, 0] = 100.0
    neg = hard_wrong_labels(scores, y)
    counts = torch.bincount(neg, minlength=4).float() / neg.numel()
    assert counts[0] == 0
    assert counts[2] == pytest.approx(0.8, abs=0.02) and counts[1] == pytest.approx(0.1, abs=0.02)
    m = make("ff", negatives="hard")
    stats = m.train_step(*batch(6), epoch=0)
    assert torch.isfinite(stats.layer_loss).all()


def _slow_label_scores(m, x):
    """Reference: one full pass per candidate label, written out independently."""
    per_label = []
    n_cls, hw = m.num_classes, x.shape[-1]
    pats = label_patterns(m.cfg["label_encoding"], n_cls, hw, hw) * m.cfg["label_amplitude"]
    for n in range(n_cls):
        h, gs = x + pats[n], []
        for blk in m.blocks:
            h = blk(h / h.square().mean(dim=(1, 2, 3), keepdim=True).sqrt())
            gs.append(h.square().mean(dim=(1, 2, 3)))
        per_label.append(torch.stack(gs))          # [L, B]
    return torch.stack(per_label, dim=2)            # [L, B, N]


@pytest.mark.parametrize("trial_batch", [4096, 25, 1, "auto"])  # one pass; 2 images per pass; 1 per pass; CPU's
def test_ff_batched_label_trials_equal_per_label_loop(trial_batch):
    m = make("ff", trial_batch=trial_batch, label_layers="first")  # label at every layer: tested below
    opt = torch.optim.AdamW(m.param_groups(), lr=1e-2)
    for s in range(2):  # move away from the initial weights
        opt.zero_grad(set_to_none=True)
        m.train_step(*batch(seed=s), epoch=0)
        opt.step()
    m.eval()
    x, _ = batch(5, seed=7)
    fast = m.layer_scores(x)
    slow = _slow_label_scores(m, x)
    assert len(fast) == 3 and all(s.shape == (5, 10) for s in fast)
    for i in range(3):
        assert torch.allclose(fast[i], slow[i], rtol=1e-4, atol=1e-5), i
    assert len(m.layer_scores(x, upto=2)) == 2


def test_ff_train_step_stats_and_strategies():
    m = make("ff", fusion_from=2)
    x, y = batch(6)
    stats = m.train_step(x, y, 0)
    assert stats.layer_loss.shape == (3,) and torch.isfinite(stats.layer_loss).all()
    pos, neg = stats.extra["train_pos_acc"], stats.extra["train_neg_acc"]
    assert ((0 <= pos) & (pos <= 6) & (0 <= neg) & (neg <= 6)).all()
    assert torch.allclose(stats.layer_correct, (pos + neg) / 2)
    assert m.train_acc_name == "train_posneg_acc"  # not a class accuracy: named apart in the history
    assert all(p.grad is not None for p in m.parameters())
    m.eval()
    counts = m.eval_counts(x, y)  # validation positives/negatives, with seeded wrong labels
    assert set(counts) == {"pos_acc", "neg_acc"} and counts["pos_acc"].shape == (3,)
    assert torch.equal(counts["neg_acc"], m.eval_counts(x, y)["neg_acc"])
    scores = [torch.zeros(2, 10) for _ in range(3)]
    scores[0][:, 0], scores[1][:, 1], scores[2][:, 2] = 9.0, 2.0, 1.5
    scores[2][:, 1] = 1.0
    assert (m.predict(scores, "fusion", 0).argmax(1) == 1).all()  # layer 1 is not fused
    assert (m.predict(scores, "last", 0).argmax(1) == 2).all()
    assert (m.predict(scores, "best", 0).argmax(1) == 0).all()
    blk0 = sum(p.numel() for p in m.blocks[0].parameters())
    assert m.inference_params("best", 0) == blk0 + m.pattern0.numel()


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_ff_loss_by_hand(scale):
    m = make("ff", theta=2.0, goodness_scale=scale)
    x, y = batch(4)
    torch.manual_seed(1)
    stats = m.train_step(x, y, 0)
    torch.manual_seed(1)
    neg = wrong_labels(y, 10)
    with torch.no_grad():
        h = torch.cat([m.with_labels(x, y), m.with_labels(x, neg)])
        h = m.blocks[0](h / h.square().mean(dim=(1, 2, 3), keepdim=True).sqrt())
        g = h.square().mean(dim=(1, 2, 3))
    expected = (F.softplus(scale * (2.0 - g[:4])) + F.softplus(scale * (g[4:] - 2.0))).mean()
    assert stats.layer_loss[0].item() == pytest.approx(expected.item(), rel=1e-5)


def test_ff_goodness_scale_default_and_validation():
    assert make("ff").cfg["goodness_scale"] == 10.0
    with pytest.raises(ConfigError, match="goodness_scale"):
        make("ff", goodness_scale=0.0)


@pytest.mark.parametrize("encoding", ["random", "planes"])
def test_ff_label_at_every_layer(encoding):
    m = make("ff", label_layers="all", label_encoding=encoding)
    extra = 10 if encoding == "planes" else 1
    first = 3 + (10 if encoding == "planes" else 0)
    assert [b.conv.in_channels for b in m.blocks] == [first, 8 + extra, 8 + extra]
    assert make("ff", label_layers="first").blocks[1].conv.in_channels == 8  # the input only
    assert make("ff").blocks[1].conv.in_channels == 9  # default: every layer, one pattern channel
    stats = m.train_step(*batch(6), epoch=0)
    assert torch.isfinite(stats.layer_loss).all() and all(p.grad is not None for p in m.parameters())
    m.eval()
    x, _ = batch(5, seed=3)
    fast = m.layer_scores(x)

    def rms(t):
        return t / t.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()

    for n in range(10):  # reference: the label after every later block's normalisation
        h = x
        for i, blk in enumerate(m.blocks):
            hw = h.shape[-1]
            if encoding == "planes":
                lab = torch.zeros(5, 10, hw, hw)
                lab[:, n] = 1.0
            else:
                lab = label_patterns("random", 10, hw, hw)[n].expand(5, 1, hw, hw)
            h = blk(rms(torch.cat([h, lab], 1)) if i == 0 and encoding == "planes" else
                    rms(h + lab) if i == 0 else torch.cat([rms(h), lab], 1))
            assert torch.allclose(fast[i][:, n], h.square().mean(dim=(1, 2, 3)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="label_layers"):
        make("ff", label_layers="some")


def test_ff_refuses_imagenet():
    with pytest.raises(ConfigError, match=r"imagenet.*not run"):
        resolve_config("ff", "imagenet", [], method_class("ff"))


# --- BP -------------------------------------------------------------------------------
def test_bp_learns_a_fixed_batch_end_to_end():
    m = make("bp")
    assert m.readout_names == ["head"] and not m.layer_local
    x, y = batch(8)
    opt = torch.optim.AdamW(m.param_groups(), lr=3e-3)
    first = None
    for _ in range(25):
        opt.zero_grad(set_to_none=True)
        stats = m.train_step(x, y, 0)
        # one loss reaches every block: backprop, not layer-local
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.blocks[0].parameters())
        opt.step()
        first = stats.layer_loss.item() if first is None else first
    assert stats.layer_loss.item() < 0.5 * first
    m.eval()
    (scores,) = m.layer_scores(x)
    assert torch.equal(m.predict([scores], "last", 0), scores)


def test_bpvgg_is_a_conventional_vgg_trained_end_to_end():
    cfg = resolve_config("bpvgg", "cifar10", [{"channels": [8, 8, 16], "pool_layers": [2, 3]}], method_class("bpvgg"))
    m = create_method("bpvgg", cfg, INFO10)
    kinds = [[type(layer).__name__ for layer in blk] for blk in m.blocks]
    assert kinds == [["Conv2d", "BatchNorm2d", "ReLU"], ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"],
                     ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]]
    x, y = batch(8)
    opt = torch.optim.SGD(m.param_groups(), lr=0.05, momentum=0.9)
    first = None
    for _ in range(20):
        opt.zero_grad(set_to_none=True)
        stats = m.train_step(x, y, 0)
        opt.step()
        first = stats.layer_loss.item() if first is None else first
    assert stats.layer_loss.item() < 0.5 * first
    run = load_yaml(RUNS / "bpvgg" / "cifar10.yaml")
    assert run["optimizer"] == "sgd" and run["weight_decay"] > 0


# --- all three: the Method protocol and the run files ------------------------------------
@pytest.mark.parametrize("name", ["ff", "cwc", "bp"])
def test_protocol_and_state_dict_round_trip(name):
    m = make(name)
    x, y = batch()
    stats = m.train_step(x, y, 0)
    n = len(m.readout_names)
    assert stats.layer_loss.shape == (n,) and stats.layer_correct.shape == (n,)
    assert torch.isfinite(stats.layer_loss).all()
    m.eval()
    scores = m.layer_scores(x)
    assert len(scores) == n and all(s.shape == (5, 10) for s in scores)
    for s in m.strategies:
        assert m.predict(scores, s, 0).shape == (5, 10)
        assert m.inference_params(s, 0) > 0
    m2 = make(name)
    m2.load_state_dict(m.state_dict())
    m2.eval()
    for a, b in zip(m2.layer_scores(x), scores):
        assert torch.equal(a, b)


RUN_FILES = sorted(p for m in ("ff", "cwc", "bp", "bpvgg") for p in (RUNS / m).glob("*.yaml"))


def test_every_method_and_dataset_has_a_run_file():
    names = {(p.parent.name, p.stem) for p in RUN_FILES}
    for m in ("ff", "cwc", "bp", "bpvgg"):
        for d in ("mnist", "fashionmnist", "cifar10", "cifar100", "imagenet"):
            assert (m, d) in names


@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_run_files_resolve_and_build(path):
    from asge.data.catalog import dataset_info

    method, dataset = path.parent.name, path.stem
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"{path}: key without a comment: {line}"
    layer = load_yaml(path)
    if (method, dataset) == ("ff", "imagenet"):
        with pytest.raises(ConfigError, match="not run"):
            resolve_config(method, dataset, [layer], method_class(method))
        return
    cfg = resolve_config(method, dataset, [layer], method_class(method))
    info = dataset_info(dataset, cfg)
    with torch.device("meta"):  # build without allocating the weights
        m = create_method(method, cfg, info)
    assert len(m.readout_names) >= 1
