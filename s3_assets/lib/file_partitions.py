"""One Dagster partition per data file: partition keys from object keys, and what a sensor
tick should add, delete and re-run.

A partition key is the key relative to the prefix, percent-encoded where Dagster or a path
would misread it: `%`, `/` (the IO manager makes a partition a path segment), `,` and `|`
(lists and multi-partition keys), control characters and non-ASCII, and a dot that starts the
key or follows a dot (so neither `...`, which Dagster forbids, nor `.`/`..` appear). Stable (a
function of the key) and reversible (`relative_key(partition_key(k)) == k`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from s3_assets.lib.changes import ObjectState, diff_states

# Dagster's recommendations: partitions per asset, partition changes per sensor evaluation.
MAX_PARTITIONS = 100_000
MAX_CHANGES_PER_TICK = 25_000

_SAFE = "-_.~ !$&'()*+;=:@"
_DOT_TO_ENCODE = re.compile(r"(?:(?<=^)|(?<=\.))\.")


def partition_key(relative: str) -> str:
    return _DOT_TO_ENCODE.sub("%2E", quote(relative, safe=_SAFE))


def relative_key(partition: str) -> str:
    return unquote(partition)


@dataclass(frozen=True)
class PartitionPlan:
    """One tick's work. add/delete: partition keys; run: partitions to (re)materialize (the
    added ones and the changed ones); refused: new files over `max_partitions`; carried: changes
    left for the next tick by `max_changes`; baseline: the (ETag, size) each partition now stands for."""

    add: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    run: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    carried: int = 0
    baseline: dict[str, ObjectState] = field(default_factory=dict)


def _state(state: ObjectState | list) -> ObjectState:
    """(ETag, size) as a tuple: a baseline read back from JSON holds lists."""
    etag, size = state
    return (str(etag), int(size))


def plan_partitions(known: Collection[str], baseline: Mapping[str, ObjectState], current: Mapping[str, ObjectState],
                    max_changes: int = MAX_CHANGES_PER_TICK, max_partitions: int = MAX_PARTITIONS) -> PartitionPlan:
    """known: the partitions that exist; baseline: partition -> the (ETag, size) last run for it;
    current: partition -> (ETag, size) of each data file now. Deletions go first, then new files
    (at most up to `max_partitions` in all), then changed ones, `max_changes` in all; what does
    not fit is left as it is and found again next tick. Pure: no I/O."""
    before: dict[str, ObjectState] = {key: _state(baseline.get(key, ("", -1))) for key in known}  # unknown: re-run it
    changes = diff_states(before, current)
    budget = max_changes
    delete = changes.deleted[:budget]
    budget -= len(delete)
    room = max(0, max_partitions - (len(known) - len(delete)))
    addable, refused = changes.new[:room], changes.new[room:]
    add = addable[:budget]
    budget -= len(add)
    changed = changes.changed[:max(0, budget)]
    carried = (len(changes.deleted) - len(delete)) + (len(addable) - len(add)) + (len(changes.changed) - len(changed))
    gone = set(delete)
    new_baseline = {key: _state(state) for key, state in baseline.items() if key in known and key not in gone}
    new_baseline.update({key: _state(current[key]) for key in add + changed})
    return PartitionPlan(add=add, delete=delete, run=sorted(add + changed), refused=refused, carried=carried,
                         baseline=new_baseline)
