"""The resources the definitions are being built with, in one place: `s3_assets.definitions`
builds them from the environment (`s3_assets.settings.build_resources`) and loads the defs
folder inside `building_with(resources)`; a group whose assets show where they read or write
(source URLs, S3 URIs) reads its resource here, in its `defs.py`. Outside a build (the `ASSETS`
lists for tests and scripts) there are none, and those assets show placeholders."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_RESOURCES: ContextVar[Mapping[str, Any] | None] = ContextVar("s3_assets_resources", default=None)


def configured_resource(key: str) -> Any | None:
    """The resource `key` of the definitions being built, or None outside a build."""
    resources = _RESOURCES.get()
    return resources.get(key) if resources is not None else None


@contextmanager
def building_with(resources: Mapping[str, Any] | None) -> Iterator[None]:
    token = _RESOURCES.set(resources)
    try:
        yield
    finally:
        _RESOURCES.reset(token)
