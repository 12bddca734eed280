"""A key as an S3-compatible server stores it, the one form in which keys and prefixes that
guard data are compared (the exports area, lock notes, file maps, the configured prefixes).

SeaweedFS, and other servers that keep objects in a file system, read `\\` as `/` and collapse
empty segments: `e20\\raw\\train.csv` and `//e20/raw/gt.csv` are stored as `e20/raw/...`. A
`.` or `..` segment has no one meaning: SeaweedFS refuses it, AWS keeps it literally, a file
system resolves it."""

from __future__ import annotations


def stored_segments(key: str) -> list[str]:
    """`key`'s segments as such a server stores it (`\\` read as `/`, empty segments dropped)."""
    return [segment for segment in key.replace("\\", "/").split("/") if segment]


def renamed_by_servers(key: str) -> str | None:
    """Why some server stores (or refuses) `key` under another name than written, or None if
    every server stores it as written. `key` is an object key, a folder ending in '/', or ''
    (the bucket root)."""
    if not key:
        return None
    if "\\" in key:
        return "holds a '\\', which some S3 servers store as '/': use '/'"
    segments = (key[:-1] if key.endswith("/") else key).split("/")
    if any(segment in (".", "..") for segment in segments):
        return "has a '.' or '..' segment, which servers refuse or read differently: write it without them"
    if any(segment == "" for segment in segments):
        return "has an empty segment ('//'), which some S3 servers drop"
    return None
