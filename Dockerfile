# syntax=docker/dockerfile:1
# One image for every Sendgate process: web (gunicorn, the default command), worker and beat
# (celery). Configuration comes from the environment only; see .env.example and docker-compose.yml.
FROM python:3.11-slim

# The code runs from /app (PYTHONPATH), not from the copy `pip install .` leaves in site-packages:
# settings.py finds templates/ and static/ next to the packages (BASE_DIR).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app \
    SENDGATE_VAR_DIR=/app/var \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    WEB_CONCURRENCY=3

WORKDIR /app

RUN groupadd --system --gid 10001 sendgate \
 && useradd --system --uid 10001 --gid sendgate --home-dir /app --shell /usr/sbin/nologin sendgate

# Only what the image needs, listed one by one: a bare `COPY . .` would also bake .env, .git and
# var/ into the image, and demo/ (the demo servers) stays out of production.
COPY pyproject.toml manage.py ./
COPY config ./config
COPY mailkit ./mailkit
COPY directory ./directory
COPY signin ./signin
COPY policy ./policy
COPY outbox ./outbox
COPY gateways ./gateways
COPY outbound ./outbound
COPY templates ./templates
COPY static ./static

# Runtime dependencies only (no dev extras).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
 && rm -rf build ./*.egg-info

# Static files are collected at build time, as root so the app cannot alter them. The key exists
# only for this step (settings refuse to load without one) and is not kept in the image.
RUN DJANGO_SECRET_KEY=collectstatic-build-step-only python manage.py collectstatic --noinput \
 && mkdir -p var \
 && chown sendgate:sendgate var

USER sendgate

EXPOSE 8000 587 465
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
