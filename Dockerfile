# Infirmary: the FHIR server image (non-root, small). Build: docker build -t infirmary .
# Storage, auth and everything else are configured with FHIR_* environment variables (README, docs/mongodb.md).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fhir_server ./fhir_server
COPY profiles ./profiles
COPY terminology ./terminology
COPY hl7_adapters ./hl7_adapters
COPY smart_apps ./smart_apps
RUN python -m venv /opt/infirmary \
 && /opt/infirmary/bin/pip install --upgrade pip \
 && /opt/infirmary/bin/pip install . \
 && find /opt/infirmary -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim
ENV PATH=/opt/infirmary/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FHIR_DATA_DIR=/data \
    FHIR_SERVER__HOST=0.0.0.0 \
    FHIR_SERVER__PORT=8080
RUN groupadd --system --gid 10001 infirmary \
 && useradd --system --uid 10001 --gid infirmary --home-dir /data --shell /usr/sbin/nologin infirmary \
 && mkdir -p /data && chown infirmary:infirmary /data
COPY --from=build /opt/infirmary /opt/infirmary
USER infirmary:infirmary
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/fhir/metadata', timeout=2).status != 200)"]
CMD ["infirmary", "serve"]
