#!/usr/bin/env bash
# Run ruff, then the whole test suite: a real PostgreSQL (a throwaway initdb cluster under /tmp if none
# answers), headless Chromium for the browser tests (installed from Debian's packages if missing,
# unless KBIT_NO_SYSTEM_INSTALL=1), offline Hugging Face caches.
set -euo pipefail
cd "$(dirname "$0")/.."
# Lint first (seconds): pyflakes, pycodestyle errors and import order, as configured in pyproject.toml.
.venv/bin/ruff check kbit tests benchmarks scripts
if [ -z "${KBIT_TEST_POSTGRES_URL:-}" ]; then
  KBIT_TEST_POSTGRES_URL=$(bash scripts/ensure_postgres.sh)
  export KBIT_TEST_POSTGRES_URL
fi
if ! command -v chromium >/dev/null 2>&1; then
  if [ -n "${KBIT_NO_SYSTEM_INSTALL:-}" ]; then
    echo "test.sh: chromium is missing and KBIT_NO_SYSTEM_INSTALL is set: the real-browser dashboard tests will be skipped" >&2
  elif [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing Debian's chromium for the real-browser dashboard tests (KBIT_NO_SYSTEM_INSTALL=1 skips them)" >&2
    (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null))
  else
    sudo apt-get install -y -qq chromium >/dev/null
  fi
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
# Two pytest processes (pytest-xdist; the Ray, outage and browser tests each stay in one, see
# tests/conftest.py), each with one torch/OpenMP thread: more threads than cores and OpenMP's
# spinning threads starve each other (the suite is mostly waiting on Ray and servers, not CPU).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec .venv/bin/python -m pytest -n "${KBIT_TEST_PROCESSES:-2}" --dist loadgroup "$@"
