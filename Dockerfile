# voiceagent: a phone agent on the OpenAI Realtime API.
#   docker build -t voiceagent .
#   docker run --env-file voiceagent.env -p 8080:8080 voiceagent
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY voiceagent ./voiceagent
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin voiceagent

USER voiceagent
EXPOSE 8080
# SIGTERM drains: /readyz answers 503, calls in progress finish (VOICEAGENT_DRAIN_SECONDS), then exit.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8080\")}/healthz', timeout=2)"
CMD ["voiceagent", "serve"]
