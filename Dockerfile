# voiceagent: a phone agent on the OpenAI Realtime API.
#   docker build -t voiceagent .
#   docker run --env-file voiceagent.env -p 8080:8080 -v voiceagent-data:/data --stop-timeout 45 voiceagent
# (--stop-timeout 45: Docker's own 10 s would cut callers off before the 30 s drain.)
# (voiceagent.env: start from voiceagent.env.example. compose.example.yaml does the same, with a stop
# grace period longer than the drain.) Put a TLS-terminating proxy in front: Twilio needs HTTPS and WSS,
# and the proxy should add header/body read timeouts and a per-IP connection limit (README, "Security").
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    VOICEAGENT_DATABASE_URL=sqlite:////data/voiceagent.db

WORKDIR /app
# The dependencies first, at the exact versions of the lock file (a layer rebuilt only when it changes).
COPY requirements.lock ./
RUN pip install -r requirements.lock
# Then voiceagent itself, with no dependency resolution left to chance; pip check proves the set coherent.
COPY pyproject.toml README.md LICENSE ./
COPY voiceagent ./voiceagent
# The restaurant example (prompt, tools, eval scenarios): VOICEAGENT_INSTRUCTIONS_FILE=/app/examples/...
COPY examples ./examples
RUN pip install --no-deps . \
    && pip check \
    && groupadd --system --gid 10001 voiceagent \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin voiceagent \
    && mkdir /data && chown 10001:10001 /data

# Call records (SQLite) and recordings live here; mount a volume so they outlive the container.
VOLUME /data
USER 10001:10001
EXPOSE 8080
# SIGTERM drains: /readyz answers 503, calls in progress finish (VOICEAGENT_DRAIN_SECONDS), then exit.
# Give the container longer than that to stop (docker stop -t 45, compose stop_grace_period: 45s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/healthz', timeout=2)"]
CMD ["voiceagent", "serve"]
