# node-agent sidecar image (README "Deploying"):
#   docker build -t node-agent .                    # without MPI
#   docker build -t node-agent --build-arg MPI=1 .  # with the [mpi] extra (MPICH wheel)
# tini is PID 1 (reaps orphans, forwards signals). By default the agent runs as the
# non-root user `agent` (uid 10001), and so do its jobs (`agent check` warns what that
# exposes). For isolated jobs run the container as root (`docker run --user 0`): jobs
# then run as `agent-job`, and the agent's files stay out of their reach (README "Job
# isolation"). Give it --stop-timeout 100 (drain 60 + kill grace 10 + reporting 30).
ARG PYTHON_IMAGE=python:3.11-slim

# Build stage: the agent and its dependencies in a venv; nothing else is kept.
FROM ${PYTHON_IMAGE} AS build
ARG MPI=
RUN python -m venv /opt/agent/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY executors ./executors
COPY examples ./examples
RUN if [ -n "$MPI" ]; then target='.[mpi]'; else target='.'; fi \
 && /opt/agent/venv/bin/pip install --no-cache-dir --disable-pip-version-check "$target"

# Final stage: the same base image (the venv's python is its /usr/local/bin/python).
FROM ${PYTHON_IMAGE}
COPY scripts/create-job-user /usr/local/sbin/create-job-user
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 agent \
 && useradd --create-home --uid 10001 --gid agent agent \
 && /usr/local/sbin/create-job-user \
 && install -d -m 0711 -o agent -g agent /var/lib/agent
COPY --from=build /opt/agent/venv /opt/agent/venv

# AGENT_HEALTH__LISTEN on all interfaces so that kubelet probes reach it: /metrics and
# /status (what each slot runs) are then visible on the pod network too. The
# HEALTHCHECK below expects port 9465; change both together.
ENV PATH=/opt/agent/venv/bin:$PATH \
    AGENT_STATE_DIR=/var/lib/agent \
    AGENT_LOG__FORMAT=json \
    AGENT_HEALTH__LISTEN=0.0.0.0:9465
EXPOSE 9465
VOLUME ["/var/lib/agent"]
# Numeric, so that Kubernetes' runAsNonRoot can tell it is not root.
USER 10001:10001

# /healthz answers 200 while the agent's loops tick, 503 otherwise; it never calls the
# job server, so a server outage does not make every agent unhealthy. The request raises
# on a refused connection and on any status >= 400: the command then exits 1. It goes
# direct, whatever HTTP_PROXY the agent is given. No curl in the image: the venv's
# python does it. The start period covers server.startup_timeout.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["/opt/agent/venv/bin/python", "-c", \
         "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:9465/healthz', timeout=5)"]

# SIGTERM drains (README "Deploying"). tini passes it to the agent only (no -g): the
# agent stops its jobs itself.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "agent"]
CMD ["run"]
