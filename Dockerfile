# ticklake in a container: one image, two services (see contrib/compose.yaml and README
# "Running in production"). Build: docker build -t ticklake .
# Untested here (no image builder where it was written): kept to plain, standard steps.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY analytics ./analytics
COPY lake ./lake
COPY recorder ./recorder
COPY sql ./sql
COPY ticklake ./ticklake
RUN pip install '.[metrics]' && rm -rf /src

RUN useradd --system --uid 10001 --home-dir /data ticklake && mkdir /data && chown ticklake /data
USER ticklake
WORKDIR /data
VOLUME /data
ENV TICKLAKE_DATA=/data
# record: 9108, analyze: 9109 (--metrics-port); bind 0.0.0.0 inside the container only.
EXPOSE 9108 9109
# SIGTERM stops either command cleanly (the recorder within 5 s): give it `stop_grace_period`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ticklake"]
CMD ["--help"]
