#!/usr/bin/env bash
# Writes .env for `docker compose up`: a fresh SECRET_KEY and PostgreSQL password, kept if
# .env already has them (so the stack's sessions and database survive a second run).
set -euo pipefail
cd "$(dirname "$0")/.."
touch .env
chmod 600 .env
for name in SECRET_KEY POSTGRES_PASSWORD; do
  if ! grep -q "^${name}=" .env; then
    echo "${name}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" >> .env
    echo "compose-env: wrote a new ${name} to .env"
  fi
done
