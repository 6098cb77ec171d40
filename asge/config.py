"""Run configuration: one flat dict, layered and validated before anything runs.

Layers, later wins: common defaults (below) -> the method's defaults (Method.defaults)
-> the run file (config/runs/<method>/<dataset>.yaml) -> `--set key=value` overrides.
Every key is checked: unknown keys, wrong types and out-of-range values stop the run with
a message that names the key, the bad value and what is allowed.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

ROLES = ("result", "runtime", "host")


class ConfigError(ValueError):
    """A configuration key or value is invalid."""


@dataclass(frozen=True)
class Key:
    """One configuration key: its default, accepted types and an optional range check."""

    default: Any
    types: tuple
    doc: str
    choices: tuple | None = None
    check: Callable[[Any], bool] | None = None
    allowed: str = ""  # words for what `check` accepts, used in error messages
    #: "result": changes what a run computes (part of the digest); "runtime": only where and how it
    #: runs (threads, device, ...); "host": a runtime key the workflow sets for every job from its config
    role: str = "result"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Key role {self.role!r} is not one of {ROLES}")

    def validate(self, name: str, value: Any) -> Any:
        if value is None and (self.default is None or type(None) in self.types):
            return None
        # YAML reads 1e-3 as a string in some spellings and 5 where 5.0 was meant.
        if float in self.types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if float in self.types and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) and bool not in self.types:
            raise ConfigError(f"config key {name!r}: {value!r} is a boolean; expected {_type_names(self.types)}")
        if not isinstance(value, self.types):
            raise ConfigError(
                f"config key {name!r}: {value!r} has type {type(value).__name__}; expected {_type_names(self.types)}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key {name!r}: {value!r} is not a finite number")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"config key {name!r}: {value!r} is not allowed; choose one of {list(self.choices)}")
        if self.check is not None and not self.check(value):
            raise ConfigError(f"config key {name!r}: {value!r} is out of range; allowed: {self.allowed}")
        return value


def _type_names(types: tuple) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def nonneg(v: Any) -> bool:
    return v >= 0


def positive(v: Any) -> bool:
    return v > 0


def auto_or_positive(v: Any) -> bool:
    """A size whose default depends on the device ("auto": asge.runtime.auto_size) or a count > 0."""
    return v == "auto" if isinstance(v, str) else v > 0


INT = (int,)
FLOAT = (float,)
OPT_INT = (int, type(None))
INT_LIST = (list,)
AUTO_SWITCH = ("auto", True, False)  # switches whose default depends on the device (asge.runtime.switch_on)

COMMON_KEYS: dict[str, Key] = {
    # what to run
    "method": Key(None, (str,), "registered method name"),
    "dataset": Key(None, (str,), "data set name"),
    "seed": Key(0, INT, "seed for weights, projections, splits, shuffling and augmentation", check=nonneg, allowed=">= 0"),
    # data
    "data_root": Key("data", (str,), "folder where data sets are read from and downloaded to", role="host"),
    "data_mirrors": Key(["../shared/data"], (list,), "read-only folders searched before data_root", role="host"),
    "offline": Key(False, (bool,), "never try to download; fail with instructions instead", role="host"),
    "cache_dir": Key(None, (str, type(None)), "where decoded uint8 arrays are cached (default: <data_root>/.asge-cache)",
                    role="runtime"),
    "val_size": Key(5000, INT, "images held out of the training set for validation/Best Pred", check=positive, allowed="> 0"),
    "subset_per_class": Key(None, OPT_INT, "keep k training images per class (smoke runs)",
                            check=positive, allowed="> 0 or null"),
    "test_subset_per_class": Key(None, OPT_INT, "keep k test images per class (smoke runs)",
                                 check=positive, allowed="> 0 or null"),
    "image_size": Key(None, OPT_INT, "input resolution (ImageNet; null = the data set's own)",
                      check=positive, allowed="> 0 or null"),
    "input_mean": Key(None, (list, type(None)), "per-channel mean of the input normalisation (null = the data set's)"),
    "input_std": Key(None, (list, type(None)), "per-channel std of the input normalisation (null = the data set's)"),
    "augment_crop_padding": Key(None, OPT_INT, "random-crop padding in pixels (0 = off; null = data set default)",
                                check=nonneg, allowed=">= 0"),
    "augment_hflip": Key(None, (bool, type(None)), "random horizontal flip (null = data set default)"),
    "num_workers": Key(8, INT, "DataLoader workers (ImageNet only)", check=nonneg, allowed=">= 0", role="runtime"),
    # optimisation
    "epochs": Key(10, INT, "training epochs", check=positive, allowed="> 0"),
    "batch_size": Key(128, INT, "global training batch size", check=positive, allowed="> 0"),
    "eval_batch_size": Key("auto", (str, int), "evaluation batch size: auto (1000 on CUDA, 100 on a CPU, where a "
                           "batch that stays in cache evaluates ~1.5x faster) or a number",
                           check=auto_or_positive, allowed="auto or > 0", role="runtime"),
    "optimizer": Key("adamw", (str,), "optimiser", choices=("adamw", "adam", "sgd")),
    "lr": Key(1e-3, FLOAT, "peak learning rate", check=positive, allowed="> 0"),
    "weight_decay": Key(5e-4, FLOAT, "decoupled weight decay (AdamW) or L2 (SGD, Adam)", check=nonneg, allowed=">= 0"),
    "momentum": Key(0.9, FLOAT, "SGD momentum", check=nonneg, allowed=">= 0"),
    "schedule": Key("cosine", (str,), "learning-rate schedule, stepped per iteration", choices=("cosine", "constant")),
    "warmup_epochs": Key(1.0, FLOAT, "linear warm-up length in epochs", check=nonneg, allowed=">= 0"),
    "min_lr": Key(0.0, FLOAT, "final learning rate of the cosine schedule", check=nonneg, allowed=">= 0"),
    # execution
    "device": Key("auto", (str,), "auto (cuda if present), cpu, cuda, cuda:N",
                  check=lambda v: v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()),
                  allowed="auto, cpu, cuda or cuda:N", role="runtime"),
    "require_gpu": Key(False, (bool,), "refuse to run without CUDA (the workflow's GPU jobs set this)", role="host"),
    "amp": Key("auto", (str, bool), "bf16 autocast: auto (on for CUDA, off for CPU), true (CUDA or CPU), false",
               choices=AUTO_SWITCH),
    "channels_last": Key("auto", (str, bool), "channels_last model and batches: auto (on for CUDA, off for CPU), "
                         "true, false", choices=AUTO_SWITCH),
    "compile": Key(False, (bool,), "torch.compile the model"),
    "deterministic": Key(False, (bool,), "deterministic algorithms (bitwise-reproducible on CPU)"),
    "threads": Key(None, OPT_INT, "torch CPU threads (null = torch's default)", check=positive, allowed="> 0 or null",
                  role="host"),
    "log_every": Key(100, INT, "steps between finiteness checks of the loss", check=positive, allowed="> 0", role="runtime"),
}

#: keys that say where and how a run executes, never what it computes (role runtime or host):
#: changing them reruns nothing in the workflow and keeps a checkpoint valid
RUNTIME_KEYS = tuple(k for k, key in COMMON_KEYS.items() if key.role != "result")

#: the runtime keys the workflow sets for every job from its own config (where the data is, how
#: many threads): never part of a request; they reach the job through $ASGE_RUNTIME and --set,
#: not through a rule param, so that moving the data reruns nothing
HOST_KEYS = tuple(k for k, key in COMMON_KEYS.items() if key.role == "host")

#: what each key meant before it took "auto": the same digest, so that checkpoints written then
#: still resume (FF's `trial_batch` only chunks the prediction: no result changes)
AUTO_WAS: dict[str, Any] = {"amp": True, "channels_last": True, "trial_batch": 4096}


def changes_result(key: str) -> bool:
    """Whether two runs that differ in `key` are different runs: every key but the runtime ones
    and `epochs` (a run may be extended). A method's own keys are all result keys."""
    return key not in RUNTIME_KEYS and key != "epochs"


def result_digest(cfg: Mapping[str, Any]) -> str:
    """The one answer to "is this the same run?": a digest of the keys that change a result.
    Recorded in the checkpoint and in metrics.json (`config_hash`)."""
    payload = {k: v for k, v in sorted(cfg.items()) if changes_result(k)}
    for k, before in AUTO_WAS.items():
        if payload.get(k) == "auto":
            payload[k] = before
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def method_keys(method_cls: type) -> dict[str, Key]:
    """All keys a method accepts: the common ones and its own."""
    own = getattr(method_cls, "keys", {})
    clash = set(own) & set(COMMON_KEYS)
    if clash:
        raise RuntimeError(f"{method_cls.__name__} redefines common keys {sorted(clash)}")
    not_result = sorted(k for k, key in own.items() if key.role != "result")
    if not_result:
        raise RuntimeError(f"{method_cls.__name__}: its own keys {not_result} must have role 'result' (runtime and "
                           f"host keys are common keys, in asge.config.COMMON_KEYS)")
    return {**COMMON_KEYS, **own}


def load_yaml(path: str | Path) -> dict:
    """Read a flat YAML mapping; a clear error if the file is missing or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        with p.open() as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}: {getattr(e, 'problem', None) or e}; "
                          f"fix the file (key: value per line)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of key: value, not {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` with the value parsed as YAML (so 1e-3, true, [1, 2] work)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value")
    key, raw = item.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value {raw!r} is not valid YAML ({getattr(e, 'problem', e)}); "
                          f"write lists as [1, 2] and quote strings with special characters") from None


def resolve_config(method: str, dataset: str, layers: list[Mapping], method_cls: type) -> dict:
    """Merge `layers` over the defaults of `method_cls` and validate every key."""
    keys = method_keys(method_cls)
    cfg = {k: v.default for k, v in keys.items()}
    for layer in layers:
        for k, v in layer.items():
            if k not in keys:
                near = difflib.get_close_matches(k, keys, n=3)
                hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
                raise ConfigError(f"unknown config key {k!r} for method {method!r}{hint} (see docs/configuration.md)")
            cfg[k] = v
    if cfg.get("method") not in (None, method) or cfg.get("dataset") not in (None, dataset):
        raise ConfigError(
            f"config says method={cfg.get('method')!r}, dataset={cfg.get('dataset')!r} but the run asks for "
            f"method={method!r}, dataset={dataset!r}"
        )
    cfg["method"], cfg["dataset"] = method, dataset
    for k, key in keys.items():
        cfg[k] = key.validate(k, cfg[k])
    check = getattr(method_cls, "check_config", None)
    if check is not None:
        check(cfg)
    return cfg
