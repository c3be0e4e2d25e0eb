"""Anonymization methods (registered by name) and the compositor that blends them in."""
from .base import METHODS, Method
from .compositor import Compositor, Region, RegionParams
from . import methods  # noqa: F401  (registration)


def get_method(name: str = "blur", params: dict | None = None) -> Method:
    return METHODS.create(name, params)


__all__ = ["METHODS", "Method", "Compositor", "Region", "RegionParams", "get_method"]
