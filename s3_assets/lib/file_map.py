"""Which listed objects are data files, by explicit rules instead of the notebook's
`len(key.rsplit('.')) == 2` trick: files only, at most so deep, with allowed extensions."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class FileMapRules:
    """max_depth 0: directly under the prefix; 1: raw/ (leaves out raw/metadata/)."""

    max_depth: int = 1
    extensions: tuple[str, ...] = field(default=("csv",))


class DuplicateNameError(ValueError):
    """Two data files would get the same name; the message names both keys."""


def build_file_map(listing: pd.DataFrame, rules: FileMapRules) -> dict[str, str]:
    """name (file name without extension) -> key, for the data files the rules select."""
    allowed = {ext.lower().lstrip(".") for ext in rules.extensions}
    selected = listing[
        ~listing["is_folder"] & listing["depth"].le(rules.max_depth) & listing["extension"].isin(allowed)
    ]
    file_map: dict[str, str] = {}
    for key, name in zip(selected["key"], selected["name"], strict=True):
        stem = name.rsplit(".", 1)[0]
        if stem in file_map:
            raise DuplicateNameError(
                f"two data files are both named {stem!r}: {file_map[stem]!r} and {key!r}; "
                "rename one, or narrow the rules (max_depth, extensions)"
            )
        file_map[stem] = key
    return file_map
