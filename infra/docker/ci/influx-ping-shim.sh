#!/bin/sh
# `influx ping` for the VictoriaMetrics stand-in: the one influx CLI command docker-compose.yml
# uses (the influxdb service's healthcheck). Exit 0 when the server answers /health.
if [ "$1" = ping ]; then
  exec curl -fsS -o /dev/null http://127.0.0.1:8086/health
fi
echo "influx (CI stand-in): only 'influx ping' is implemented" >&2
exit 2
