#!/usr/bin/env bash
# Set up a fresh machine and run the test suite: the README's test command, and what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
# The agreement tests cross-check our RBO against the rbo package; its metadata pins numpy<2 (it runs fine on 2.x).
.venv/bin/python -m pip install --quiet --no-deps rbo==0.1.3
# The report test renders the HTML page in a real headless Chromium, and the labelling page's tests drive it
# through chromium-driver (Debian's packages).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "scripts/test.sh: could not install chromium and chromium-driver; the browser tests will fail" >&2
  fi
fi
# The Label Studio round-trip test starts a real Label Studio; its pins conflict with ours, so it gets its own
# environment (created once; the pin is the `labelstudio` extra of pyproject.toml).
if [ ! -x .venv-labelstudio/bin/label-studio ]; then
  ("$PY" -m venv .venv-labelstudio && .venv-labelstudio/bin/python -m pip install --quiet --upgrade pip \
    && .venv-labelstudio/bin/python -m pip install --quiet "label-studio==1.23.2") \
    || echo "scripts/test.sh: could not install label-studio into .venv-labelstudio; its test will fail" >&2
fi
export HARNESS_REQUIRE_LABEL_STUDIO=1
# Lint and types first: a failure here fails the test command.
.venv/bin/python -m ruff check harness tests benchmarks
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest "$@"
