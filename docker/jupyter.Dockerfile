# syntax=docker/dockerfile:1
# JupyterLab with the arrowroot client and the example notebooks.  Build from the repository
# root (the build context):
#
#   docker build -f docker/jupyter.Dockerfile -t arrowroot-jupyter .
#
# The notebooks read the server location from ARROWROOT_URL (compose.yaml sets
# grpc://arrowroot:8815).  The data stays on the server: this image mounts none of it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The client alone (`pip install .` installs no server libraries: README "Quick start"), with the
# awkward and dataframe extras the notebooks use, plus JupyterLab and jupyterhub-singleuser
# (the hub layout, compose profile "hub", spawns this image).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY catalog ./catalog
COPY flight_server ./flight_server
COPY clients ./clients
RUN pip install ".[awkward,pandas,polars]" jupyterlab jupytext matplotlib "jupyterhub>=6,<7" \
 && cd / && rm -rf /src \
 && python -c "import arrowroot.clients, matplotlib, jupytext"
WORKDIR /

RUN useradd --uid 1000 --user-group --create-home --home-dir /home/jovyan jovyan \
 && mkdir -p /home/jovyan/work \
 && chown jovyan:jovyan /home/jovyan/work
# The examples as jupytext percent-format .py files (the source of truth, tested in
# tests/test_notebooks.py) and as .ipynb notebooks made from them at build time.
COPY --chown=jovyan:jovyan examples /home/jovyan/examples
RUN cd /home/jovyan/examples \
 && jupytext --to ipynb [0-9]*.py \
 && chown jovyan:jovyan *.ipynb
WORKDIR /home/jovyan
USER jovyan
VOLUME ["/home/jovyan/work"]

ENV ARROWROOT_URL=grpc://arrowroot:8815
EXPOSE 8888
# JupyterLab prints its login URL (with a token) to the log; set JUPYTER_TOKEN to choose one.
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--ServerApp.root_dir=/home/jovyan"]
