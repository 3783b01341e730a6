# The hpo worker image: PyTorch with CUDA from the base image, hpo and its dependencies on top.
#   docker build -t hpo-worker .
#   docker run --rm --gpus all -e HPO_STORAGE -e PGPASSWORD hpo-worker run studies/cifar10_resnet18.yaml
# The base image's Python must be 3.11 or newer (tomllib reads pyproject.toml below).
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that editing the source reuses this layer.
# The constraints keep the base image's torch and torchvision: pip must not swap in other CUDA
# builds that merely satisfy hpo's version range.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip list --format=freeze | grep -iE '^(torch|torchvision)==' > /tmp/constraints.txt \
 && pip install -r /tmp/requirements.txt -c /tmp/constraints.txt \
 && rm /tmp/requirements.txt /tmp/constraints.txt

# hpo itself: no dependency resolution here, only the package.
COPY README.md ./
COPY hpo ./hpo
RUN pip install --no-deps . && rm -rf build ./*.egg-info
COPY studies ./studies

# A user of its own; it owns the working directory and the folders hpo writes to (datasets,
# worker logs), which compose and Kubernetes mount as volumes.
RUN useradd --create-home --uid 1000 --user-group hpo \
 && mkdir -p /app/data /app/hpo-logs /app/hpo-artifacts \
 && chown hpo:hpo /app /app/data /app/hpo-logs /app/hpo-artifacts
USER hpo

ENTRYPOINT ["hpo"]
CMD ["--help"]
