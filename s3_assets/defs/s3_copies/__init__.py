"""Group `s3_copies`: the raw tables' CSV copies under `<prefix>/raw/` (`defs.py`, with the
configured prefix) and their checks (`checks.py`). Loaded as a dg defs folder."""
