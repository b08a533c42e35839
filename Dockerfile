# One image for every role: migrate, worker, beat and flower differ only in their command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 syncworker
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
