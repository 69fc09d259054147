# syntax=docker/dockerfile:1
# styleserve images. Every Python package comes from the pins in constraints.txt (the file CI installs
# with, see scripts/_venv.sh); the GPU image uses constraints-gpu.txt, which is constraints.txt with
# onnxruntime-gpu in place of onnxruntime. tests/test_deploy.py checks both.
#
#   target      base                                              what
#   server      nvidia/cuda:13.1.1-cudnn-runtime-ubuntu24.04       gRPC server on onnxruntime-gpu (CUDA 13, cuDNN 9); no torch
#   server-cpu  python:3.11-slim                                  gRPC server on onnxruntime (CPU); no torch
#   client      python:3.11-slim                                  client CLI and `styleserve batch` only (no onnxruntime, no torch)
#   export      python:3.11-slim                                  checkpoint -> model directory converter (torch CPU wheel)
#
#   docker build --target server     -t styleserve:gpu .
#   docker build --target server-cpu -t styleserve:cpu .
#   docker build --target client     -t styleserve:client .
#   docker build --target export     -t styleserve:export .
#
# The server images run as uid 10001, serve every model directory under /models (mount it read-only),
# listen for gRPC on 50051 and serve Prometheus /metrics on 9464. See docs/deploy.md.

# ----------------------------------------------------------------------------------------------------
# Python 3.11 images (the CPU server, the client, the exporter): a virtual environment at /opt/venv is
# built in a *-build stage and copied into a clean final stage (no sources, no pip cache).
FROM python:3.11-slim AS py
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN groupadd --gid 10001 styleserve \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin styleserve

FROM py AS py-build
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
COPY export ./export
COPY server ./server
COPY clients ./clients

FROM py-build AS cpu-build
RUN pip install -c constraints.txt ".[server]"

FROM py-build AS client-build
RUN pip install -c constraints.txt ".[client]"

FROM py-build AS export-build
# torch 2.13.0 as the CPU wheel (2.13.0+cpu satisfies the torch==2.13.0 pin) from the PyTorch CPU
# index; the default PyPI torch wheel for Linux pulls in gigabytes of CUDA libraries.
RUN pip install -c constraints.txt --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
# A layer of its own: torch (hundreds of MB) stays cached while styleserve's own code changes.
# hadolint ignore=DL3059
RUN pip install -c constraints.txt ".[export]"

# ----------------------------------------------------------------------------------------------------
# export: convert checkpoints in a container. Mount the checkpoint and an output folder, run as yourself:
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" -w /work styleserve:export ckpt.pkl models/ffhq
FROM py AS export
COPY --from=export-build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["styleserve", "export"]

# ----------------------------------------------------------------------------------------------------
# client: `styleserve health|models|generate|...|batch`, e.g. for Kubernetes batch Jobs.
FROM py AS client
COPY --from=client-build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/styleserve
ENTRYPOINT ["styleserve"]
CMD ["--help"]

# ----------------------------------------------------------------------------------------------------
# server-cpu: the server on the CPU onnxruntime wheel.
FROM py AS server-cpu
COPY --from=cpu-build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/styleserve
VOLUME ["/models"]
ENV STYLESERVE_HOST=0.0.0.0 STYLESERVE_PORT=50051 STYLESERVE_METRICS_HOST=0.0.0.0 STYLESERVE_METRICS_PORT=9464
EXPOSE 50051 9464
# grpc.health.v1 (service ""): SERVING once every model is warm; NOT_SERVING while warming up or draining.
# Exec form (no shell): the port is spelled out; with another STYLESERVE_PORT, override it (--health-cmd).
HEALTHCHECK --interval=15s --timeout=10s --start-period=120s --retries=3 \
    CMD ["styleserve", "health", "--target", "127.0.0.1:50051"]
ENTRYPOINT ["styleserve", "serve", "/models"]

# ----------------------------------------------------------------------------------------------------
# GPU images. onnxruntime-gpu 1.31 (constraints-gpu.txt) is built for CUDA 13.x and cuDNN 9.x (its PyPI
# metadata: nvidia-cuda-runtime~=13.0, nvidia-cudnn-cu13~=9.0); this base ships both. Host driver >= 580
# (CUDA 13.x minor version compatibility) and the NVIDIA Container Toolkit. Ubuntu 24.04's Python is 3.12.
FROM nvidia/cuda:13.1.1-cudnn-runtime-ubuntu24.04 AS gpu
# The Ubuntu packages are not pinned (DL3008): the archive drops superseded versions, so a pin breaks the build
# within weeks; the base image tag fixes the release, and every Python package is pinned by constraints.
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 styleserve \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin styleserve

FROM gpu AS gpu-build
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md constraints.txt constraints-gpu.txt ./
# The `server` extra with onnxruntime-gpu instead of onnxruntime (same module: never both), plus
# nvidia-ml-py for the GPU memory metrics; then styleserve itself without its dependencies.
RUN pip install -c constraints-gpu.txt onnxruntime-gpu grpcio grpcio-health-checking grpcio-reflection \
    protobuf prometheus-client pillow fpng numpy nvidia-ml-py
COPY src ./src
COPY export ./export
COPY server ./server
COPY clients ./clients
RUN pip install -c constraints-gpu.txt --no-deps . \
    && python -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"

# ----------------------------------------------------------------------------------------------------
# server (the default target): the server on onnxruntime-gpu.
FROM gpu AS server
COPY --from=gpu-build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/styleserve
VOLUME ["/models"]
ENV STYLESERVE_HOST=0.0.0.0 STYLESERVE_PORT=50051 STYLESERVE_METRICS_HOST=0.0.0.0 STYLESERVE_METRICS_PORT=9464
EXPOSE 50051 9464
# Generous start period: loading, CUDA/cuDNN initialisation and the warm-up runs of every model.
HEALTHCHECK --interval=15s --timeout=10s --start-period=300s --retries=3 \
    CMD ["styleserve", "health", "--target", "127.0.0.1:50051"]
ENTRYPOINT ["styleserve", "serve", "/models"]
