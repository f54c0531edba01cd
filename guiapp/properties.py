"""Observable properties, declared once: `steps = Property(20)` in an `Observable` class.

Each Property gets a `<name>Changed` signal (made by the metaclass when the class is
created, as Qt wants) that is emitted only when the value really changes, so widgets
bound both ways never loop. Every change is also announced on `changed(name, value)`.
Values keep their declared type: an int property stores int(value), a float one
float(value); signals carry Python objects, so seeds past 32 bits travel intact.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

from PySide6.QtCore import QObject, Signal, SignalInstance

T = TypeVar("T")


class Property(Generic[T]):
    """One observable value of an Observable; `persist` says whether settings keep it."""

    def __init__(self, default: T, *, persist: bool = True) -> None:
        self.default = default
        self.persist = persist
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def signal_name(self) -> str:
        return f"{self.name}Changed"

    def coerce(self, value: Any) -> T:
        """The value in the declared type (a spin box's float 3.0 becomes the int 3)."""
        kind = type(self.default)
        if self.default is None or isinstance(value, kind):
            return value  # type: ignore[no-any-return]
        return kind(value)  # type: ignore[call-arg]

    @overload
    def __get__(self, obj: None, owner: type) -> Property[T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...
    def __get__(self, obj: object | None, owner: type) -> Property[T] | T:
        if obj is None:
            return self
        return obj._values.get(self.name, self.default)  # type: ignore[attr-defined,no-any-return]

    def __set__(self, obj: Observable, value: T) -> None:
        value = self.coerce(value)
        if obj._values.get(self.name, self.default) == value:
            return
        obj._values[self.name] = value
        getattr(obj, self.signal_name).emit(value)
        obj.changed.emit(self.name, value)


class ObservableMeta(type(QObject)):  # type: ignore[misc]
    """Adds a `<name>Changed` signal for every Property the class body declares."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
        for key, value in list(namespace.items()):
            if isinstance(value, Property):
                namespace[f"{key}Changed"] = Signal(object)
        return super().__new__(mcs, name, bases, namespace)


class Observable(QObject, metaclass=ObservableMeta):
    """A QObject whose Property attributes are observable."""

    changed = Signal(str, object)  # any property: (name, new value)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._values: dict[str, Any] = {}

    @classmethod
    def properties(cls) -> list[Property[Any]]:
        """Every Property of the class and its bases, in declaration order."""
        found: dict[str, Property[Any]] = {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if isinstance(value, Property):
                    found[key] = value
        return list(found.values())

    def signal(self, name: str) -> SignalInstance:
        """The change signal of property `name`."""
        return getattr(self, f"{name}Changed")  # type: ignore[no-any-return]
