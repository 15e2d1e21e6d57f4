# One image for both services: the command chooses (`syncd run` or `unsealer run`).
# Multi-architecture by construction: only pure-Python wheels and pip, no per-architecture step,
# so `docker buildx build --platform linux/amd64,linux/arm64 .` builds both from this file.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY plumbing ./plumbing
COPY syncd ./syncd
COPY unsealer ./unsealer
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . && cp constraints.txt /wheels/

FROM python:3.12-slim
# The wheel only; its dependencies come from the package index for the target architecture, at
# the exact versions of constraints.txt (transitive ones included): what the tests ran.
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --constraint /wheels/constraints.txt /wheels/*.whl \
    && rm -rf /wheels
# A read-only root filesystem: nothing is written outside /tmp (mount an emptyDir there).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
# For `docker run` (Kubernetes ignores it and uses the manifests' probes): both services serve
# /healthz on --health-address, 0.0.0.0:8080 by default.
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["syncd", "run"]
