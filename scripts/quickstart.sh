#!/usr/bin/env bash
# Quick start: install everything, then run the demo (a sandbox with a real
# policy talking to a test host in its own network namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/quickstart/demo.py
