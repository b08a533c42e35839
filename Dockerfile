# One image for every role: migrate, worker, beat and flower differ only in their command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# /app stays root's; the runtime user writes only its event spool, where events wait while PostgreSQL and
# Redis are both down. A named volume mounted there starts as a copy of this directory, owner included.
RUN useradd --create-home --uid 10001 syncworker \
    && install -d -o syncworker -g syncworker -m 0700 /var/lib/syncworker/spool
# DEMO_FALLBACK=false: a container whose upstream secrets did not arrive refuses to start; it never
# plays the demo by accident (`syncworker demo --demo-dir /tmp/demo` plays it on purpose).
ENV EVENT_SPOOL_PATH=/var/lib/syncworker/spool/events.spool \
    DEMO_FALLBACK=false
WORKDIR /app

COPY pyproject.toml README.md alembic.ini ./
COPY worker ./worker
COPY tasks ./tasks
COPY models ./models
COPY migrations ./migrations
RUN pip install .

USER syncworker
# Exec form everywhere: the process that receives SIGTERM must be Celery itself or `syncworker run`,
# which forwards it to each child's main pid; otherwise shutdown is not warm.
CMD ["syncworker", "run"]
