# syntax=docker/dockerfile:1
# JupyterHub for the KCDC layout (hub + notebooks + data service, docker/compose.yaml profile
# "hub"): users log in to the hub, get a notebook container from the arrowroot-jupyter image
# (DockerSpawner), and read data from the arrowroot service as themselves — the notebook's
# $JUPYTERHUB_API_TOKEN is their credential, checked by arrowroot against this hub.
#
#   docker build -f docker/jupyterhub.Dockerfile -t arrowroot-hub .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The hub's proxy is configurable-http-proxy from npm (Node.js from Debian).
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && npm install -g configurable-http-proxy@5.3.0 \
 && npm cache clean --force \
 && rm -rf /var/lib/apt/lists/*
RUN pip install "jupyterhub>=6,<7" "dockerspawner>=14" \
 && python -c "import jupyterhub, dockerspawner"

COPY docker/jupyterhub_config.py /srv/jupyterhub/jupyterhub_config.py
WORKDIR /srv/jupyterhub
VOLUME ["/srv/jupyterhub/state"]
EXPOSE 8000
# The hub starts notebook containers through the Docker socket, so it runs as root (as in
# JupyterHub's own docker deployment); the notebooks run as the unprivileged jovyan user.
CMD ["jupyterhub", "-f", "/srv/jupyterhub/jupyterhub_config.py"]
