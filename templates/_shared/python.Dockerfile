# Dockerfile for {{app}}, a {{stack}} app, written by `deployctl init`. Edit it freely.
# The agent builds it into an image and runs it with $PORT set; the server listens on
# $HOST:$PORT. HOST is 127.0.0.1 for the agent's default host networking; set
# HOST = "0.0.0.0" in deploy.toml [env] with another --container-network.

# Stage 1: the dependencies, installed into a virtual environment.
FROM python:{{python_version}}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /venv
ENV PATH=/venv/bin:$PATH
WORKDIR /app
{{python_install}}

# Stage 2: the virtual environment and the code, run as the unprivileged user `app`.
FROM python:{{python_version}}-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/venv/bin:$PATH \
    HOST=127.0.0.1 PORT={{port}}
RUN useradd --create-home --uid 10001 app
WORKDIR /app
COPY --from=build /venv /venv
COPY --chown=app:app . .
USER app
{{python_extra}}EXPOSE {{port}}
CMD {{python_cmd}}
