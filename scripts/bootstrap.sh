#!/usr/bin/env bash
# Installs exactly what uv.lock pins into .venv, on a machine that has only python3 (3.11+).
# uv itself is installed into .tools/ (pinned) when it is not already on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.8"
if command -v uv >/dev/null 2>&1; then
  UV=uv
else
  if [ ! -x .tools/bin/uv ]; then
    echo "bootstrap: installing uv ${UV_VERSION} into .tools/" >&2
    python3 -m venv .tools
    .tools/bin/pip install --quiet "uv==${UV_VERSION}"
  fi
  UV=.tools/bin/uv
fi

# --locked: fail instead of silently re-resolving when pyproject.toml and uv.lock disagree.
"$UV" sync --locked --quiet "$@"

# The tests' npm peers (certified OpenID Connect implementations), from their lock file,
# when npm is here and they are not installed yet (the tests that need them say so if not).
if command -v npm >/dev/null 2>&1 && [ ! -d tests/peers/node_modules/openid-client ]; then
  npm ci --prefix tests/peers --no-audit --no-fund --loglevel=error >/dev/null
fi
