# One image for the four Nexxus services: `docker run IMAGE api|writer|router|transport`.
# Configured only through NEXXUS_* environment variables (see docker-compose.yml, docs/edge.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NEXXUS_DATA_DIR=/var/lib/nexxus

WORKDIR /src
COPY pyproject.toml README* ./
COPY services ./services
COPY gen ./gen
COPY clients/python ./clients/python
RUN pip install '.[postgres,elasticsearch,opensearch]' \
    && useradd --system --uid 10001 --home-dir /var/lib/nexxus --create-home nexxus \
    && rm -rf /src

WORKDIR /var/lib/nexxus
USER nexxus

# api: gRPC 50051 · transport: gRPC event stream 50052, WebSocket bridge 8765.
EXPOSE 50051 50052 8765

ENTRYPOINT ["nexxus", "serve"]
CMD ["api"]
