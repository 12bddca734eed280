"""Group `uci_raw`: the UCI files as tables (`defs.py`, with the configured source), the data
dictionary (`assets.py`) and their checks (`checks.py`). Loaded as a dg defs folder."""
