"""A small generic registry: things found by name, imported only when first asked for.

Entries are objects registered directly, lazy `"module:attribute"` strings, the modules of a
package (each module one entry, named after it, holding the object in a known attribute), and
third-party plugins through an entry-point group. Backends, variant kinds, judge kinds and judge
modes are found through registries; an unknown name is a UsageError listing the known ones.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from harness.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, *, entry_points: str | None = None, package: str | None = None,
                 attribute: str | None = None) -> None:
        """`what` names the kind of thing in messages; `package` + `attribute`: every module of the package
        is an entry holding its object in `attribute`; `entry_points`: a plugin group."""
        self.what = what
        self._objects: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._aliases: dict[str, str] = {}
        self._entry_points = entry_points
        self._package = package
        self._attribute = attribute
        self._discovered = False

    def register(self, name: str, obj: T | str, *, aliases: tuple[str, ...] = ()) -> None:
        """Register an object, or a lazy 'module:attribute' string."""
        if isinstance(obj, str):
            self._lazy[name] = obj
        else:
            self._objects[name] = obj
        for a in aliases:
            self._aliases[a] = name

    def decorator(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            self.register(name, obj, aliases=aliases)
            return obj

        return wrap

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        if self._package and self._attribute:
            pkg = importlib.import_module(self._package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_") and info.name not in self._objects:
                    self._lazy.setdefault(info.name, f"{self._package}.{info.name}:{self._attribute}")
        if self._entry_points:
            from importlib.metadata import entry_points

            for ep in entry_points(group=self._entry_points):
                self._lazy.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._discover()
        return sorted({*self._objects, *self._lazy})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (self._aliases.get(name, name) in self.names())

    def get(self, name: str) -> T:
        self._discover()
        key = self._aliases.get(name, name)
        if key in self._objects:
            return self._objects[key]
        if key in self._lazy:
            module_name, _, attr = self._lazy[key].partition(":")
            module = importlib.import_module(module_name)
            obj: T = getattr(module, attr) if attr else module  # type: ignore[assignment]
            self._objects[key] = obj
            return obj
        known = ", ".join(self.names()) or "none"
        raise UsageError(f"unknown {self.what} '{name}': choose from {known}")

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self.names()]


def lazy_object(spec: str) -> Any:
    """The object a 'module:attribute' string names."""
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module
