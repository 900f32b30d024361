# syntax=docker/dockerfile:1
# Image of the credbroker operator. Build from the repository root:
#
#   docker build -t REGISTRY/credbroker:0.1.0 .
#
# Both stages use the same base image, so the virtual environment built in
# the first stage runs unchanged in the second. Only /opt/venv is copied: no
# pip cache, source tree or build tools reach the final image.
#
# NOTE: the base is pinned by exact tag. Pin it by digest as well when you
# build (docs/helm.md shows how to look the digest up); the digest could not
# be resolved where this file was written.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# --only-binary=:all: makes the build fail instead of compiling a dependency:
# each one ships manylinux wheels (psycopg[binary] brings its own libpq).
# Only credbroker itself, pure Python, is built from source.
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/venv/bin/pip install --only-binary=:all: --no-binary=credbroker . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="credbroker" \
      org.opencontainers.image.description="Kubernetes operator that brokers short-lived credentials for verified workloads" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric user, so that runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 credbroker \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin credbroker
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# kopf's health endpoint and the Prometheus metrics.
EXPOSE 8080 9090
ENTRYPOINT ["credbroker"]
CMD ["run"]
