# tocsin: `docker build -t tocsin .`; the image runs `tocsin worker` unless told
# otherwise. Name the broker with TOCSIN_KAFKA_BOOTSTRAP_SERVERS=HOST:PORT.
#
# Two stages. `build` has a C compiler: it builds tocsin's wheel with the
# mypyc-compiled detector modules and detectors/_native (TOCSIN_REQUIRE_COMPILED=1:
# a compile error fails the build instead of falling back to pure Python), and
# a wheel of every dependency. `runtime` installs those wheels only, from the
# folder, without the index: no compiler, no test tools, no embedded broker
# (the `embedded` extra is not installed: the image always names a broker).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    TOCSIN_REQUIRE_COMPILED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY stream ./stream
COPY detectors ./detectors
COPY alerts ./alerts
# The wheel must hold the compiled modules: a pure-Python image is slower than
# the README's capacity figures say.
RUN pip wheel --wheel-dir /wheels . \
    && python -c "import glob, sys, zipfile; \
[wheel] = glob.glob('/wheels/tocsin-*.whl'); names = zipfile.ZipFile(wheel).namelist(); \
missing = [m for m in ('detectors/traffic', 'detectors/features', 'detectors/_native') \
           if not any(n.startswith(m + '.') and n.endswith('.so') for n in names)]; \
sys.exit(f'{wheel} lacks the compiled modules {missing}') if missing else print(wheel, 'holds', \
sum(n.endswith('.so') for n in names), 'compiled modules')"

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels tocsin \
    && useradd --create-home --home-dir /var/lib/tocsin --uid 10001 tocsin
USER tocsin
WORKDIR /var/lib/tocsin
EXPOSE 9464
CMD ["tocsin", "worker"]
