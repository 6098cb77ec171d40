"""Every registered method, loaded: import this (not asge.registry) to create methods by name.

    from asge.methods import create_method, list_methods, method_class

asge.registry stays a leaf (method modules import it to register themselves); this module
imports all method modules, so that their @register_method decorators have run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

# the one place that imports every method module, so that its @register_method has run
import asge.asge_method  # noqa: F401  (asge)
import baselines.bp  # noqa: F401  (bp, bpvgg)
import baselines.cwc  # noqa: F401  (cwc)
import baselines.ff  # noqa: F401  (ff)
from asge.registry import registered

if TYPE_CHECKING:
    from asge.data import DatasetInfo
    from asge.method import Method


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    return sorted(registered())


def method_class(name: str) -> type:
    """The class registered under `name`; a clear error for an unknown name."""
    methods = registered()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; registered methods: {', '.join(sorted(methods))}")
    return methods[name]


def create_method(name: str, cfg: Mapping, info: "DatasetInfo") -> "Method":
    """Build the registered method `name` for data set `info` from a resolved config."""
    return method_class(name)(cfg, info)
