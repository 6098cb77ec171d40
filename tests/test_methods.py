"""One parametrised test over every registered method: build per data-set shape, one step,
finite losses, output shapes, checkpoint round-trip, (layer-local methods) no gradient
crossing layers; display names, diagnostics and the registry as a leaf."""
from __future__ import annotations

import io
import re
import subprocess
import sys
import types

import pytest
import torch

from asge.config import resolve_config
from asge.methods import create_method, list_methods, method_class

SHAPES = {  # dataset: (classes, channels, side)
    "mnist": (10, 1, 28),
    "fashionmnist": (10, 1, 28),
    "cifar10": (10, 3, 32),
    "cifar100": (100, 3, 32),
    "imagenet": (1000, 3, 32),
}


def small_overrides(name: str, dataset: str) -> dict:
    """Narrow nets so that the test is fast; CwC keeps its class-multiple structure."""
    keys = method_class(name).keys
    if name == "cwc":
        n = SHAPES[dataset][0]
        return {"channels": [n, n, 2 * n, 2 * n], "groups": [1, n, 1, n], "pool_layers": [2, 4],
                "superclass_layers": 0, "ilt_windows": [[0, 1]] * 4}
    if "width" in keys:
        return {"channels": [8, 8, 16, 16], "pool_layers": [2, 4]}
    return {}


def cases():
    for name in list_methods():
        for dataset in SHAPES:
            if name == "ff" and dataset == "imagenet":
                continue  # FF refuses N=1000 label passes (tested in test_baselines)
            yield name, dataset


@pytest.mark.parametrize("name, dataset", list(cases()))
def test_every_method(name, dataset):
    n_cls, c, side = SHAPES[dataset]
    info = types.SimpleNamespace(name=dataset, num_classes=n_cls, in_channels=c, image_size=side)
    cfg = resolve_config(name, dataset, [small_overrides(name, dataset)], method_class(name))
    torch.manual_seed(0)
    m = create_method(name, cfg, info)
    x, y = torch.randn(4, c, side, side), torch.randint(0, n_cls, (4,))

    opt = torch.optim.AdamW(m.param_groups(), lr=1e-3)
    opt.zero_grad(set_to_none=True)
    stats = m.train_step(x, y, 0)
    n_read = len(m.readout_names)
    assert stats.layer_loss.shape[0] == stats.layer_correct.shape[0]
    assert torch.isfinite(stats.layer_loss).all()
    trained = [p for p in m.parameters() if p.grad is not None]
    assert trained, "a training step must produce gradients"
    assert all(torch.isfinite(p.grad).all() for p in trained)
    opt.step()

    m.eval()
    with torch.no_grad():
        scores = m.layer_scores(x)
    assert len(scores) == n_read and all(s.shape == (4, n_cls) for s in scores)
    for s in m.strategies:
        out = m.predict(scores, s, best=n_read - 1)
        assert out.shape == (4, n_cls) and torch.isfinite(out).all(), s
        assert 0 < m.inference_params(s, n_read - 1) <= sum(p.numel() for p in m.parameters()) + sum(
            b.numel() for b in m.buffers())

    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    twin = create_method(name, cfg, info)
    twin.load_state_dict(torch.load(buf, weights_only=True))
    twin.eval()
    with torch.no_grad():
        again = twin.layer_scores(x)
    for a, b in zip(scores, again):
        assert torch.allclose(a, b, atol=1e-5)


def layer_of(param_name: str) -> tuple[str, int] | None:
    """('blocks', 3) for 'blocks.3.conv.weight'; None for parameters outside a layer list."""
    parts = param_name.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[:i]), int(p)
    return None


@pytest.mark.parametrize("name", [n for n in list_methods() if method_class(n).layer_local])
def test_layer_local_methods_keep_gradients_inside_layers(name):
    """Training on a batch never changes any gradient of a layer when only a *later* layer's
    inputs change: compare gradients with and without perturbing deeper layers' weights."""
    info = types.SimpleNamespace(name="cifar10", num_classes=10, in_channels=3, image_size=32)
    cfg = resolve_config(name, "cifar10", [small_overrides(name, "cifar10")], method_class(name))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))

    def grads(perturb: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        m = create_method(name, cfg, info)
        if perturb:  # scramble every parameter of the deepest layer
            with torch.no_grad():
                for n, p in m.named_parameters():
                    if layer_of(n) == last:
                        p.mul_(-3.0).add_(0.5)
        torch.manual_seed(1)
        m.train_step(x, y, 0)
        return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    torch.manual_seed(0)
    layers = [layer_of(n) for n, _ in create_method(name, cfg, info).named_parameters() if layer_of(n)]
    last = max(layers, key=lambda t: t[1])
    base, moved = grads(False), grads(True)
    earlier = [n for n in base if layer_of(n) and layer_of(n)[1] < last[1]]
    assert earlier
    for n in earlier:
        assert torch.equal(base[n], moved[n]), f"{name}: gradient of {n} depends on a later layer"


def build(name: str, dataset: str = "cifar10"):
    n_cls, c, side = SHAPES[dataset]
    info = types.SimpleNamespace(name=dataset, num_classes=n_cls, in_channels=c, image_size=side)
    cfg = resolve_config(name, dataset, [small_overrides(name, dataset)], method_class(name))
    torch.manual_seed(0)
    return create_method(name, cfg, info)


@pytest.mark.parametrize("name", list_methods())
def test_every_method_has_a_display_name_and_diagnostics(name):
    cls = method_class(name)
    assert cls.name == name and isinstance(cls.display_name, str) and cls.display_name not in ("", "?")
    m = build(name).eval()
    d = m.diagnostics(torch.randn(3, 3, 32, 32))
    assert isinstance(d, dict) and all(isinstance(k, str) for k in d)


def test_display_names():
    assert {n: method_class(n).display_name for n in list_methods()} == {
        "asge": "ASGE", "ff": "FF", "cwc": "CwC-FF", "bp": "BP", "bpvgg": "BP (VGG)"}


def test_display_name_defaults_to_the_registered_name():
    from asge.method import Method
    from asge.registry import _METHODS, register_method

    try:
        cls = register_method("_tmp_method")(type("Tmp", (Method,), {}))
        assert cls.display_name == "_tmp_method"
    finally:
        _METHODS.pop("_tmp_method", None)


def test_asge_diagnostics_are_its_goodness_distributions():
    m = build("asge").eval()
    x = torch.randn(70, 3, 32, 32)
    d = m.diagnostics(x)
    assert set(d) == {"goodness"}
    want = m.goodness_distributions(x[:64])
    assert set(d["goodness"]) == set(want) and all(torch.equal(d["goodness"][k], want[k]) for k in want)
    assert d["goodness"]["layer2_origin"].numel() == 64 * 8 * m.patches[1] ** 2  # 64 images, 8 channels


def test_layer_local_methods_share_one_base():
    from asge.layerlocal import LayerLocalMethod

    local = {n for n in list_methods() if method_class(n).layer_local}
    assert local == {"asge", "ff", "cwc"}
    assert all(issubclass(method_class(n), LayerLocalMethod) for n in local)


def test_only_asge_methods_imports_the_method_modules():
    """The registry stays a leaf: asge.methods is the one loader; no other module imports a
    method module just to register it (tests import them for their helpers)."""
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"^\s*(import baselines\b|from baselines\b|import asge\.methods\.asge\b|from asge\.methods\.asge\b|"
                         r"from asge\.methods import asge\b)", re.M)
    files = [*repo.glob("asge/**/*.py"), *repo.glob("baselines/**/*.py"), *repo.glob("workflow/**/*.py")]
    loaders = sorted(str(f.relative_to(repo)) for f in files if pattern.search(f.read_text()))
    assert loaders == ["asge/methods/__init__.py"], loaders
    code = ("import asge.registry as r; assert not r.registered(); import asge.methods; "
            "print(sorted(r.registered()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted(list_methods()))


def test_each_key_says_its_role_and_only_result_keys_enter_the_digest():
    from asge.config import COMMON_KEYS, HOST_KEYS, RUNTIME_KEYS, Key, changes_result, method_keys, result_digest

    assert set(HOST_KEYS) <= set(RUNTIME_KEYS) and {"threads", "data_root", "device"} <= set(RUNTIME_KEYS)
    assert changes_result("lr") and not changes_result("threads") and not changes_result("epochs")
    assert all(changes_result(k) == (COMMON_KEYS[k].role == "result" and k != "epochs") for k in COMMON_KEYS)
    cfg = {"method": "bp", "lr": 1e-3, "threads": 1, "device": "cpu", "epochs": 3}
    assert result_digest(cfg) == result_digest({**cfg, "threads": 2, "device": "cuda", "epochs": 9})
    assert result_digest(cfg) != result_digest({**cfg, "lr": 2e-3})
    with pytest.raises(ValueError, match="role"):
        Key(1, (int,), "x", role="sometimes")
    own = types.new_class("Own", (), {})
    own.keys = {"my_threads": Key(1, (int,), "x", role="runtime")}
    with pytest.raises(RuntimeError, match="must have role 'result'"):
        method_keys(own)
