"""Typed, validated configuration dataclasses: the mechanism behind `scl_ray.config`.

Every configuration section is a frozen dataclass whose fields are declared with `setting(...)`
(a default plus optional bounds or choices) and whose `__post_init__` calls `validate(self)`.
`from_dict` builds a section from plain YAML data, rejecting unknown keys, wrong types and
out-of-range values with a `ConfigError` that names the key path and what is allowed;
`to_dict` is its inverse, so a resolved config survives a YAML round trip unchanged.
Core modules declare their own sections here (nanoGPT style); this module imports only `scl_ray.errors`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from scl_ray.errors import UserError


class ConfigError(UserError):
    """A configuration value is wrong; `path` is the dotted key path (e.g. `loop.strength`)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def setting(default: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, help: str = "") -> Any:
    """A dataclass field with a default and the values it accepts.

    low/high: inclusive bounds (low exclusive when low_open) for numbers, and for every element of
    a tuple of numbers (a fixed set of values is a Literal type). help: one line that says what the
    value means, shown with a value out of bounds.
    """
    metadata = {"low": low, "high": high, "low_open": low_open, "help": help}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults: configuration is frozen")
    return dataclasses.field(default=default, metadata=metadata)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(arg) for arg in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Convert plain YAML data to the annotated type, or raise ConfigError naming path."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping of {sorted(f.name for f in dataclasses.fields(tp))}, "
                                    f"got {type(value).__name__} {value!r}")
        return from_dict(tp, value, path)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, path)
            except ConfigError:
                continue
        raise ConfigError(path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        for allowed in typing.get_args(tp):
            if value == allowed and type(value) is type(allowed):
                return allowed
        raise ConfigError(path, f"expected one of {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        element = typing.get_args(tp)[0]
        return tuple(_convert(item, element, f"{path}[{i}]") for i, item in enumerate(value))
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ConfigError(path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _check_bounds(value: Any, meta: dict, path: str) -> None:
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            _check_bounds(item, meta, f"{path}[{i}]")
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low, high = meta.get("low"), meta.get("high")
    too_low = low is not None and (value <= low if meta.get("low_open") else value < low)
    too_high = high is not None and value > high
    if too_low or too_high or value != value:
        left = "(" if meta.get("low_open") else "["
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        meaning = f" ({meta['help']})" if meta.get("help") else ""
        raise ConfigError(path, f"must be in {interval}, got {value!r}{meaning}")


def validate(obj: Any, path: str = "") -> None:
    """Check every field's type and bounds; call from a section's `__post_init__`."""
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        key = f"{path}.{field.name}" if path else field.name
        value = getattr(obj, field.name)
        converted = _convert(to_dict(value) if dataclasses.is_dataclass(value) else
                             (list(value) if isinstance(value, tuple) else value), hints[field.name], key)
        if converted != value or type(converted) is not type(value):
            object.__setattr__(obj, field.name, converted)
        _check_bounds(converted, dict(field.metadata), key)


def from_dict(cls: type, data: dict, path: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys with their path."""
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(where, f"unknown key; allowed keys here: {', '.join(names)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{path}.{name}" if path else name
        kwargs[name] = _convert(value, hints[name], key)
    try:
        return cls(**kwargs)
    except ConfigError as error:
        if path and not error.path.startswith(path):
            raise ConfigError(f"{path}.{error.path}", error.message) from None
        raise


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) for a dataclass tree, the inverse of `from_dict`."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(item) for item in obj]
    return obj
