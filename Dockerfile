# One image for every kbit service: the Ray head (+ scheduler), the GPU Ray workers and the dashboard.
# torch's Linux wheels from PyPI bundle CUDA, so a slim Python base is enough; the NVIDIA container
# toolkit on the host provides the driver. Triton compiles its kernels at run time: it needs gcc.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KBIT_HOME=/data/kbit \
    HF_HOME=/data/hf \
    RAY_USAGE_STATS_ENABLED=0

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential git curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p kbit && touch kbit/__init__.py && pip install -e . && rm -rf kbit
COPY kbit ./kbit
COPY examples ./examples
RUN pip install --no-deps -e . && kbit --help >/dev/null

# 6380: Ray GCS (workers join here), 10001: Ray client, 8265: Ray dashboard, 8501: kbit dashboard,
# 8000: kbit submit gateway
EXPOSE 6380 10001 8265 8501 8000
VOLUME ["/data"]
CMD ["kbit", "--help"]
