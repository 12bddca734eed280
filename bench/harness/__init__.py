"""The benchmark harness behind `bench/run.py`: `server` (SeaweedFS, the latency proxies,
seeding key spaces), `tools` (the comparison tools and the programs they run), `scenarios`
(what is measured), `report` (docs/BENCHMARKS.md and the plot). `programs/` holds the code
that runs in other processes or venvs, as plain files."""
