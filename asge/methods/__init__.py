"""Every registered method, loaded: import this (not asge.registry) to create methods by name.

    from asge.methods import create_method, list_methods, method_class

asge.registry stays a leaf (method modules import it to register themselves); this module
imports all method modules, so that their @register_method decorators have run: the suite's,
then a user's own (docs/extending.md), named in $ASGE_PLUGINS (comma-separated module names
or .py files; the workflow sets it from its `plugins` key) or declared as a Python entry point
in the group `asge.methods`.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

# the one place that imports every method module, so that its @register_method has run
import asge.methods.asge  # noqa: F401  (asge)
import baselines.bp  # noqa: F401  (bp, bpvgg)
import baselines.cwc  # noqa: F401  (cwc)
import baselines.ff  # noqa: F401  (ff)
from asge.registry import registered

if TYPE_CHECKING:
    from asge.data import DatasetInfo
    from asge.method import Method

#: where a user's method modules are named (comma-separated module names or .py paths)
PLUGINS_ENV = "ASGE_PLUGINS"
ENTRY_POINT_GROUP = "asge.methods"


class PluginError(ImportError):
    """A user's method module could not be loaded."""


def load_plugin(item: str) -> None:
    """Import one method module (a module name, or a path to a .py file), running its
    @register_method; a module already imported is not imported again."""
    try:
        if item.endswith(".py"):
            path = Path(item).expanduser().resolve()
            if not path.is_file():
                raise PluginError(f"{path} does not exist")
            name = f"asge_plugin_{path.stem}"
            if name in sys.modules:
                return
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(item)
    except Exception as e:  # noqa: BLE001 - named with the plug-in and the fix, whatever it raised
        sys.modules.pop(f"asge_plugin_{Path(item).stem}", None)
        raise PluginError(f"method plug-in {item!r} ({PLUGINS_ENV} / the workflow's `plugins` key) failed to load: "
                          f"{type(e).__name__}: {e}; fix the module or remove it from the list") from e


def load_plugins() -> None:
    """The entry points of group `asge.methods`, then every module named in $ASGE_PLUGINS."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
    for item in (s.strip() for s in os.environ.get(PLUGINS_ENV, "").split(",")):
        if item:
            load_plugin(item)


load_plugins()


def registered_methods() -> dict[str, type]:
    """Every registered method class by name, in registration order (the suite's, then plug-ins)."""
    return registered()


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
