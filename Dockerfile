# syntax=docker/dockerfile:1
# Server image (onnxruntime, no torch) and an export image (torch CPU) from one source of truth:
# the versions pinned in constraints.txt.

FROM python:3.11-slim AS base
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
COPY export ./export
COPY server ./server
COPY clients ./clients
COPY protos ./protos

FROM base AS export
RUN pip install --no-cache-dir -c constraints.txt ".[export]"
RUN useradd --uid 10001 --create-home styleserve
USER styleserve
ENTRYPOINT ["styleserve", "export"]

FROM base AS server
RUN pip install --no-cache-dir -c constraints.txt ".[server]"
RUN useradd --uid 10001 --create-home styleserve
USER styleserve
VOLUME ["/models"]
ENV STYLESERVE_HOST=0.0.0.0 STYLESERVE_PORT=50051 STYLESERVE_METRICS_PORT=9090 STYLESERVE_METRICS_HOST=0.0.0.0
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s CMD ["styleserve", "health", "--target", "127.0.0.1:50051"]
ENTRYPOINT ["styleserve", "serve", "/models"]
