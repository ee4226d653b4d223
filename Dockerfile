# syntax=docker/dockerfile:1
# One production image for every Sendgate process: web (gunicorn, the default command), worker
# and beat (celery), and the submission listener. Configuration comes from the environment only;
# see .env.example and docker-compose.yml. The demo servers and the test tools are not in it.

# --- build: the locked runtime dependencies in a virtualenv -------------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install --require-virtualenv -r requirements.lock

# --- production ----------------------------------------------------------------------------------
FROM python:3.11-slim AS production

# The code runs from /app (PYTHONPATH): settings.py finds templates/, static/ and locale/ next to
# the packages (BASE_DIR).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    SENDGATE_VAR_DIR=/app/var \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    WEB_CONCURRENCY=3

WORKDIR /app

RUN groupadd --system --gid 10001 sendgate \
 && useradd --system --uid 10001 --gid sendgate --home-dir /app --shell /usr/sbin/nologin sendgate

COPY --from=build /opt/venv /opt/venv

# Only what production needs, listed one by one: a bare `COPY . .` would also bake .env, .git,
# var/, the tests and demo/ (the demo servers) into the image.
COPY manage.py ./
COPY config ./config
COPY mailkit ./mailkit
COPY directory ./directory
COPY domainkeys ./domainkeys
COPY signin ./signin
COPY policy ./policy
COPY outbox ./outbox
COPY gateways ./gateways
COPY outbound ./outbound
COPY operations ./operations
COPY templates ./templates
COPY static ./static
# The compiled Dutch catalog (django.mo) is committed: no gettext needed here.
COPY locale ./locale

# Static files are collected at build time, as root so the app cannot alter them. Settings need a
# key to load; this one exists only for this step and is not kept in the image (compose requires
# DJANGO_SECRET_KEY at run time). var/metrics is where docker-compose.yml mounts the volume that
# all processes share for their Prometheus counters; a new volume takes this owner from here.
RUN DJANGO_SECRET_KEY=collectstatic-build-step-only SENDGATE_VAR_DIR=/tmp/build-var \
      python manage.py collectstatic --noinput \
 && rm -rf /tmp/build-var \
 && mkdir -p var/metrics \
 && chown -R sendgate:sendgate var

USER sendgate

EXPOSE 8000 587 465
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
