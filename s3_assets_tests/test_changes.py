"""The pure diff of two states (key -> (ETag, size)) that the change sensor and the dynamic
partitions are built on."""

from s3_assets.lib.changes import Changes, diff_states, state_of


def test_new_changed_deleted_and_unchanged():
    before = {"p/a": ("e1", 1), "p/b": ("e2", 2), "p/c": ("e3", 3), "p/same": ("e4", 4)}
    after = {"p/a": ("e1", 1), "p/b": ("e2-other", 2), "p/c": ("e3", 30), "p/same": ("e4", 4), "p/d": ("e5", 5)}
    changes = diff_states(before | {"p/gone": ("e6", 6)}, after)
    assert changes == Changes(new=["p/d"], changed=["p/b", "p/c"], deleted=["p/gone"])
    assert changes.counts() == {"new": 1, "changed": 2, "deleted": 1} and len(changes) == 4 and changes
    assert not diff_states(after, dict(after))
    assert diff_states({}, after).new == sorted(after) and diff_states(after, {}).deleted == sorted(after)


def test_lists_are_sorted_and_keys_are_data():
    keys = ["p/z", "p/\U0001f600", "p/a\nb", "p/```", "p/"]
    changes = diff_states({}, {k: ("e", 1) for k in keys})
    assert changes.new == sorted(keys)
    assert changes.without(["p/z"]).new == sorted(set(keys) - {"p/z"})


def test_state_of_listing_columns_strips_quotes():
    assert state_of(["k"], ['"abc"'], [3]) == {"k": ("abc", 3)}
    # tuples and lists (e.g. states read back from JSON) compare equal
    assert not diff_states({"k": ["abc", 3]}, {"k": ("abc", 3)})
