# syntax=docker/dockerfile:1
# Outbox in a container: the first stage builds the wheel, the second installs it with its
# runtime dependencies only into /opt/outbox and runs as the unprivileged user `outbox`
# (uid and gid 10025).
# State (the SQLite database, its secret key, attachment files, the log copy) lives in the
# volume /var/lib/outbox.
#
#   docker build -t outbox:local .
#   docker run -d -p 8025:8025 -v outbox-data:/var/lib/outbox outbox:local
#   docker exec <container> outbox keys create --name app --scopes send,read
#
# The configuration is /etc/outbox/outbox.toml (deploy/docker/outbox.toml): mount your own
# over it, or override any key with OUTBOX_<SECTION>__<KEY> (docs/configuration.md).

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/outbox/bin:$PATH \
    OUTBOX_CONFIG=/etc/outbox/outbox.toml \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10025 outbox \
    && useradd --system --uid 10025 --gid outbox --home-dir /var/lib/outbox \
       --shell /usr/sbin/nologin outbox \
    && install -d -o outbox -g outbox -m 0750 /var/lib/outbox
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/outbox \
    && /opt/outbox/bin/pip install --no-cache-dir /wheels/outbox-*.whl
COPY deploy/docker/outbox.toml /etc/outbox/outbox.toml
USER 10025:10025
WORKDIR /var/lib/outbox
VOLUME ["/var/lib/outbox"]
EXPOSE 8025
# /healthz answers 200 while the database answers and every loop runs (503 otherwise);
# urlopen raises on anything but 2xx, so the exit status follows it. Python's stdlib only.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8025/healthz', timeout=4)"]
CMD ["outbox", "serve", "--config", "/etc/outbox/outbox.toml"]
