"""Registry of learning methods: every method is created, trained and tested the same way.

    @register_method("asge")
    class ASGE(Method): ...

    method = create_method("asge", cfg, info)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    from asge.data import DatasetInfo
    from asge.method import Method

_METHODS: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator that makes a Method subclass available under `name`."""

    def deco(cls: type) -> type:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice ({_METHODS[name]} and {cls})")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return deco


def _import_all() -> None:
    # Importing the packages runs their @register_method decorators.
    import asge.asge_method  # noqa: F401
    import baselines  # noqa: F401


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    _import_all()
    return sorted(_METHODS)


def method_class(name: str) -> type:
    """The class registered under `name`; a clear error for an unknown name."""
    _import_all()
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; registered methods: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def create_method(name: str, cfg: Mapping, info: "DatasetInfo") -> "Method":
    """Build the registered method `name` for data set `info` from a resolved config."""
    return method_class(name)(cfg, info)
