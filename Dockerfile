# Web service and mail worker image (the same image runs both; compose picks the command).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PATH="/app/.venv/bin:$PATH"

RUN pip install --no-cache-dir "uv==0.13.8"

WORKDIR /app
# Dependencies first, from the lock only, so code changes do not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project

COPY alembic.ini ./
COPY shared ./shared
COPY web ./web
COPY worker ./worker
COPY devstack ./devstack
RUN uv sync --locked --no-dev

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
USER app

EXPOSE 8000
ENV HOST=0.0.0.0 PORT=8000
CMD ["python", "-m", "web"]
