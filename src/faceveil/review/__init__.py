"""The review page: a person checks an anonymized set, adds missed faces, re-anonymizes.

``ReviewSet`` (store.py) pairs OUT with the originals, flags risky images and
applies manual boxes; ``create_app`` (server.py) serves it over HTTP with a
token; ``faceveil review`` (faceveil.cli.review) wires both to the command line.
"""
from .store import ReviewSet, ReviewSettings

__all__ = ["ReviewSet", "ReviewSettings", "create_app"]


def create_app(review_set: ReviewSet, token: str, debug: bool = False):
    from .server import create_app as _create

    return _create(review_set, token, debug)
