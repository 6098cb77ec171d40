"""Registry of learning methods: every method is created, trained and tested the same way.

    @register_method("asge")
    class ASGE(Method): ...

    from asge.methods import create_method
    method = create_method("asge", cfg, info)

A leaf: it imports no method module (asge.methods does, then asks this registry).
"""
from __future__ import annotations

from typing import Callable

_METHODS: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator that makes a Method subclass available under `name`."""

    def deco(cls: type) -> type:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice ({_METHODS[name]} and {cls})")
        cls.name = name
        if "display_name" not in vars(cls):  # a class of its own names itself, not after its parent
            cls.display_name = name
        _METHODS[name] = cls
        return cls

    return deco


def registered() -> dict[str, type]:
    """The methods registered so far, by name (asge.methods imports them all first)."""
    return dict(_METHODS)
