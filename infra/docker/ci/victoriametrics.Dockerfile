# CI stand-in for the official `influxdb:2` image: VictoriaMetrics from Debian's package, which
# accepts the InfluxDB v2 write API (/api/v2/write), so the writer keeps its v2 sink settings.
# It keeps the interface docker-compose.yml uses: HTTP on 8086, data in /var/lib/influxdb2,
# `influx ping` for the healthcheck (a two-line shim over /health). Points are read back with
# VictoriaMetrics' /api/v1/export (`GET /internal/force_flush` makes them visible at once).
FROM debian:bookworm-slim

# Unpinned on purpose (DL3008): bookworm's current packages, security fixes included.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends victoria-metrics curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10002 --user-group --home-dir /var/lib/influxdb2 --create-home \
       --shell /usr/sbin/nologin influxdb

COPY influx-ping-shim.sh /usr/local/bin/influx

LABEL org.opencontainers.image.title="loadtest CI stand-in: InfluxDB v2 write API (VictoriaMetrics)" \
      org.opencontainers.image.description="Replaces influxdb:2 where no registry can be reached"

USER 10002:10002
EXPOSE 8086
VOLUME ["/var/lib/influxdb2"]
ENTRYPOINT ["/usr/bin/victoria-metrics", "-httpListenAddr=:8086", "-storageDataPath=/var/lib/influxdb2", "-retentionPeriod=100y"]
