# Sidecar image: tini as PID 1 (reaps orphans, forwards signals), healthcheck.
# By default the agent runs as the non-root user `agent`, and so do its jobs (`agent check`
# warns what that exposes). For isolated jobs run the container as root (`--user 0`):
# jobs then run as `agent-job`, the agent's files stay its own (README "Job isolation").
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 agent \
 && useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin agent-job \
 && mkdir -p /var/lib/agent && chown agent:agent /var/lib/agent && chmod 0711 /var/lib/agent

WORKDIR /opt/agent
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY executors ./executors
COPY examples ./examples
RUN pip install --no-cache-dir '.[mpi]'

USER agent
ENV AGENT_STATE_DIR=/var/lib/agent \
    AGENT_LOG__FORMAT=json
VOLUME ["/var/lib/agent"]

# `agent check` logs in and looks at the node slots: healthy means the server answers
# and this agent's credentials work.
HEALTHCHECK --interval=60s --timeout=30s --start-period=30s --retries=3 \
    CMD ["agent", "check"]

ENTRYPOINT ["/usr/bin/tini", "--", "agent"]
CMD ["run"]
