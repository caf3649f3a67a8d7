#!/usr/bin/env bash
# Create (or reuse) the project venv and install Nexxus with its dev extras.
#
#   scripts/bootstrap.sh && .venv/bin/pytest
#
# Same as: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'
# Environment: PYTHON (default python3), VENV (default .venv, relative to the repo root).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-python3}"
venv="${VENV:-.venv}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade pip
"$venv/bin/python" -m pip install --disable-pip-version-check -e '.[dev]'
