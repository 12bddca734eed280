"""What changed under a prefix between two looks at it.

A state is what a listing says about each object: key -> (ETag, size). Comparing two states,
rather than remembering the newest LastModified, also sees deletions and an overwrite within
the same second (S3 times have one-second resolution; an overwrite changes the ETag or size).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ObjectState = tuple[str, int]
"""(ETag without quotes, size in bytes) of one object."""


@dataclass(frozen=True)
class Changes:
    """Keys that appeared, whose content changed, and that disappeared; each sorted."""

    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.new or self.changed or self.deleted)

    def __len__(self) -> int:
        return len(self.new) + len(self.changed) + len(self.deleted)

    def counts(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "deleted": len(self.deleted)}

    def without(self, keys: Iterable[str]) -> Changes:
        """These changes minus the given keys (e.g. the objects the project wrote itself)."""
        skip = set(keys)
        return Changes([k for k in self.new if k not in skip], [k for k in self.changed if k not in skip],
                       [k for k in self.deleted if k not in skip])


def diff_states(before: Mapping[str, ObjectState], after: Mapping[str, ObjectState]) -> Changes:
    """new: in `after` only; changed: in both with another (ETag, size); deleted: in `before`
    only. Pure: no I/O, no clock; the same two states always give the same answer."""
    new = sorted(key for key in after.keys() - before.keys())
    deleted = sorted(key for key in before.keys() - after.keys())
    changed = sorted(key for key, state in after.items() if key in before and tuple(before[key]) != tuple(state))
    return Changes(new, changed, deleted)


def state_of(keys: Iterable[str], etags: Iterable[str], sizes: Iterable[int]) -> dict[str, ObjectState]:
    """A state from listing columns (e.g. `state_of(listing["key"], listing["etag"], listing["size"])`)."""
    return {key: (str(etag).strip('"'), int(size)) for key, etag, size in zip(keys, etags, sizes, strict=True)}


def state_digest(state: Mapping[str, ObjectState]) -> str:
    """One short fingerprint of a whole state: equal digests, equal listings (key, ETag, size)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        etag, size = state[key]
        digest.update(f"{key}\x00{etag}\x00{int(size)}\x00".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]
