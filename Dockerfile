# tocsin: `docker build -t tocsin .`; the image runs `tocsin worker` unless told
# otherwise. Name the broker with TOCSIN_KAFKA_BOOTSTRAP_SERVERS=HOST:PORT.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY detectors ./detectors
COPY alerts ./alerts
RUN pip install . && rm -rf /src/build

RUN useradd --create-home --home-dir /var/lib/tocsin --uid 10001 tocsin
USER tocsin
WORKDIR /var/lib/tocsin

CMD ["tocsin", "worker"]
