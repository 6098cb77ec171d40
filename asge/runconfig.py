"""Resolving a run's config, once: the layers and the request file.

    from asge.runconfig import resolve
    cfg = resolve("asge", "mnist", overrides=["epochs=3"])

Layers, later wins: the key defaults (asge.config.COMMON_KEYS and the method's own keys, the
only place defaults live) -> config/runs/<method>/<dataset>.yaml -> config files -> `key=value`
overrides. The workflow resolves every run when it plans the DAG and writes the result to the
run folder's request.yaml; `python -m asge.train --request` trains exactly that, adding only the
runtime keys (where the data is, threads, device), which never change a result. The keys' roles
and the one digest of a result are in asge.config.
Importable without the training command (no torch, no CLI).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from asge.config import HOST_KEYS, RUNTIME_KEYS, ConfigError, load_yaml, parse_override, resolve_config

REPO = Path(__file__).resolve().parent.parent

#: the environment variable that carries the host keys (asge.config.HOST_KEYS) to a job, as JSON
RUNTIME_ENV = "ASGE_RUNTIME"


def default_run_file(method: str, dataset: str) -> Path:
    """config/runs/<method>/<dataset>.yaml (it may not exist)."""
    return REPO / "config" / "runs" / method / f"{dataset}.yaml"


def resolve(method: str, dataset: str, config_files: Sequence[str | Path] = (), overrides: Sequence[str] = (),
            use_defaults: bool = True, layers: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The validated config of a run (raises ConfigError/ValueError with a clear message).
    `layers` (mappings) go between the config files and the `key=value` overrides."""
    from asge.data.catalog import dataset_info
    from asge.methods import method_class

    cls = method_class(method)
    dataset_info(dataset)  # unknown data set: clear error listing the known ones
    stack: list[Mapping[str, Any]] = []
    run_file = default_run_file(method, dataset)
    if use_defaults and run_file.exists():
        stack.append(load_yaml(run_file))
    stack += [load_yaml(f) for f in config_files]
    stack += list(layers)
    stack.append(dict(parse_override(o) for o in overrides))
    cfg = resolve_config(method, dataset, stack, cls)
    dataset_info(dataset, cfg)  # checks the keys that depend on the data set (input_mean, input_std)
    return cfg


def request_of(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What the workflow asks a run for: the resolved config without the host keys."""
    return {k: v for k, v in sorted(cfg.items()) if k not in HOST_KEYS}


def write_request(path: str | Path, request: Mapping[str, Any]) -> None:
    """Write a request file (atomically, readable by the group)."""
    import yaml

    from asge.atomic import write_text

    write_text(path, "# written by the workflow (asge.runconfig): the resolved config of this run\n"
               + yaml.safe_dump(dict(request), sort_keys=True))


def load_request(spec: str) -> dict[str, Any]:
    """A request given as a file path or as an inline JSON object (the workflow's way)."""
    if spec.lstrip().startswith("{"):
        try:
            request = json.loads(spec)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--request: not a valid JSON object ({e})") from None
    else:
        request = load_yaml(spec)
    for k in ("method", "dataset"):
        if not isinstance(request.get(k), str):
            raise ConfigError(f"request {spec[:60]!r} has no {k!r}; requests are written by the workflow "
                              f"(asge.runconfig.request_of)")
    return request


def request_config(request: Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The config of a request, with the runtime keys from $ASGE_RUNTIME and `overrides` (which
    may set runtime keys only: anything else belongs in the request)."""
    runtime = runtime_from_env()
    runtime.update(parse_override(o) for o in overrides)
    bad = sorted(set(runtime) - set(RUNTIME_KEYS))
    if bad:
        raise ConfigError(f"with --request only runtime keys may be set ({', '.join(RUNTIME_KEYS)}); got {bad}: "
                          f"change them in the workflow config so that the request records them")
    return resolve(request["method"], request["dataset"], use_defaults=False, layers=[request, runtime])


def runtime_from_env() -> dict[str, Any]:
    """The runtime keys the workflow put into $ASGE_RUNTIME (JSON), or {}."""
    raw = os.environ.get(RUNTIME_ENV)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"${RUNTIME_ENV} is not valid JSON ({e}); unset it or fix it") from None
    if not isinstance(value, dict):
        raise ConfigError(f"${RUNTIME_ENV} must be a JSON object of runtime keys")
    return value
