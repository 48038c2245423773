# Everything a developer runs. `make run` starts the stack, `make test` checks everything.
.DEFAULT_GOAL := help
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: help install run test test-fast lint format typecheck pytest migrate clean send-test-email bench compose-env messages

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install:  ## create .venv with exactly what uv.lock pins
	@scripts/bootstrap.sh

run: install  ## migrate and run web + worker (embedded PostgreSQL/Redis/SMTP where not configured)
	$(VENV)/python -m devstack

test: install lint typecheck pytest  ## lint, type-check and run the whole test suite

test-fast: install  ## in seconds: the tests that need no server (validation, MIME, rendering, tokens, parsing)
	$(VENV)/python -m pytest -q -m "not services" $(PYTEST_ARGS)

pytest: install  ## the test suite only (PYTEST_ARGS="-k reset" to filter)
	$(VENV)/python -m pytest $(PYTEST_ARGS)

lint: install  ## ruff lint + format check
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

format: install  ## apply ruff's formatting and safe fixes
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

typecheck: install  ## mypy --strict over web, worker, shared, devstack
	$(VENV)/mypy

messages: install  ## extract every message and update the catalogs (shared/locales), then check them
	$(VENV)/python scripts/messages.py
	$(VENV)/python scripts/messages.py --check

migrate: install  ## apply migrations to $$DATABASE_URL
	$(VENV)/alembic upgrade head

bench:  ## run the benchmarks (about half an hour) and append the results to bench/RESULTS.md
	@scripts/bootstrap.sh --group bench
	$(VENV)/python -m bench

clean:  ## remove the virtualenv, caches and local data (var/)
	rm -rf .venv .tools var artifacts .pytest_cache .mypy_cache .ruff_cache

send-test-email: install  ## queue the test message through the running `make run` stack: make send-test-email TO=you@example.com
	$(VENV)/python -m devstack exec python -m web send-test-email $(TO)

compose-env:  ## write .env (fresh SECRET_KEY, POSTGRES_PASSWORD) for `docker compose up`
	@scripts/compose_env.sh
