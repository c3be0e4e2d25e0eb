"""Name -> class registries for detectors and methods.

Each registered class declares its parameters as a dataclass (``Params``) whose
fields carry a ``help`` text in their metadata. The CLI parses ``name=value``
strings generically from those fields, so adding a method or detector is one
new file and no CLI change.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, Callable, Generic, TypeVar

from .errors import UsageError, check_bool

T = TypeVar("T")


def param(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a help text (shown by `faceveil methods`)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use immutable defaults (tuples) for parameters")
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


@dataclasses.dataclass(frozen=True)
class NoParams:
    pass


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        def deco(cls: type) -> type:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            cls.name = name
            self._items[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> type:
        try:
            return self._items[name]
        except KeyError:
            raise UsageError(
                f"unknown {self.kind} {name!r} (choose from: {', '.join(self.names())})"
            ) from None

    def create(self, name: str, params: dict[str, Any] | None = None) -> T:
        cls = self.get(name)
        return cls(make_params(cls, params or {}, f"{self.kind} {name!r}"))

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name in self.names():
            cls = self._items[name]
            doc = (cls.__doc__ or "").strip().splitlines()
            out.append(
                {
                    "name": name,
                    "summary": doc[0] if doc else "",
                    "params": [
                        {
                            "name": f.name,
                            "type": _type_name(_field_type(cls.Params, f)),
                            "default": f.default,
                            "help": f.metadata.get("help", ""),
                        }
                        for f in dataclasses.fields(cls.Params)
                    ],
                }
            )
        return out


def _field_type(params_cls: type, f: dataclasses.Field) -> Any:
    return typing.get_type_hints(params_cls)[f.name]


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"comma-separated {_type_name(typing.get_args(tp)[0])}s"
    return getattr(tp, "__name__", str(tp))


def _convert(text: str, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(map(str, choices))}")
        return text
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("", "none"):
            return None
        return _convert(text, args[0])
    if origin is tuple:
        # "0.6,0.9" for tuple[float, ...] ("" is the empty tuple), also as reports write it, "[0.6, 0.9]",
        # and as Python prints it, "(0.6, 0.9)", so a value copied from any of them reads back.
        item = typing.get_args(tp)[0]
        body = text.strip()
        if len(body) >= 2 and (body[0], body[-1]) in (("[", "]"), ("(", ")")):
            body = body[1:-1]
        return tuple(_convert(t.strip(), item) for t in body.split(",") if t.strip())
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected an integer") from None
    if tp is float:
        try:
            if "/" in text:  # "1/16" reads naturally for relative sizes
                num, den = text.split("/", 1)
                return float(num) / float(den)
            return float(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError("expected a number") from None
    return text


def _is_tuple_type(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_tuple_type(a) for a in typing.get_args(tp))
    return typing.get_origin(tp) is tuple


def _check_number(key: str, value: Any, tp: Any, what: str) -> Any:
    """Refuse a non-finite number for any parameter (eyebar extend=nan drew no bar and blur sigma=inf was taken,
    both reported as anonymized), and a fractional one for an integer parameter (pixelate block=2.5 from Python
    raised OpenCV's multi-line error); an integral float (block=20.0) becomes the integer."""
    def real(v: Any) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral)

    if any(real(v) and not math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,))):
        raise UsageError(f"bad value {key}={value!r} for {what}: expected a finite number")
    if tp is int and real(value):
        if not float(value).is_integer():
            raise UsageError(f"bad value {key}={value!r} for {what}: expected an integer")
        value = int(value)
    return value


# onnxruntime's thread pool reserves memory per thread up front: learnedblur threads=100000 took 16 GB and was
# killed with no message (an audit); every parameter that sizes one is bounded by this.
MAX_THREADS = 64


def check_threads(threads: int) -> None:
    """ValueError (made a one-line usage error by make_params) unless 0 <= ``threads`` <= MAX_THREADS."""
    if not 0 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be in [0, {MAX_THREADS}] (0: all cores)")


def make_params(cls: type, values: dict[str, Any], what: str) -> Any:
    """Build ``cls.Params`` from strings or typed values; raise UsageError on bad input."""
    if not isinstance(values, Mapping):  # method_params=[1, 2] raised AttributeError (no .items)
        raise UsageError(f"parameters for {what}: expected a dict of name: value, got {type(values).__name__}")
    params_cls = cls.Params
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    kwargs = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise UsageError(f"unknown parameter {key!r} for {what} (known: {known})")
        tp = _field_type(params_cls, fields[key])
        if isinstance(value, str):
            try:
                value = _convert(value, tp)
            except ValueError as exc:
                raise UsageError(f"bad value {key}={value!r} for {what}: {exc}") from None
        elif tp is bool:  # 0, None or a list passed as they were
            value = check_bool(f"{key} (for {what})", value)
        elif isinstance(value, list) and _is_tuple_type(tp):  # a JSON list read back from a report or manifest
            value = tuple(value)
        kwargs[key] = _check_number(key, value, tp, what)
    try:
        return params_cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"bad parameters for {what}: {exc}") from None


def split_method_param(item: str, option: str = "-p") -> tuple[str, str, str]:
    """``"blur.kernel=25"`` or ``"blur:kernel=25"`` -> ``("blur", "kernel", "25")``: every command that names a
    method's parameter takes both spellings (bench and --sweep wrote the dot, eval train the colon)."""
    key, eq, value = item.partition("=")
    cut = min((i for i in (key.find("."), key.find(":")) if i > 0), default=-1)
    if not eq or cut < 0 or not key[cut + 1:].strip():
        raise UsageError(f"bad {option} {item!r}: expected METHOD.NAME=VALUE, e.g. blur.kernel=25")
    return key[:cut].strip(), key[cut + 1:].strip(), value.strip()


def parse_assignments(items: list[str] | None, option: str = "-p") -> dict[str, str]:
    """Parse ``["kernel=25", "sigma=3"]`` into a dict; raise UsageError on bad syntax, and on one name given two
    different values (``-p kernel=5 -p kernel=7``: the last won without a word; nothing documents a meaning for a
    repeat). The same value twice is the same request, taken once."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"bad parameter {item!r}: expected name=value")
        key, value = item.split("=", 1)
        key, value = key.strip(), value.strip()
        if key in out and out[key] != value:
            raise UsageError(f"{option} {key}: given twice ({key}={out[key]} and {key}={value}); give each "
                             "parameter once")
        out[key] = value
    return out
