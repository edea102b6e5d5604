#!/usr/bin/env bash
# The pipeline's throughput against RabbitMQ's own, and the writer at scale (issue 14).
#
#   bash bench/pipeline.sh                              # 3 interleaved rounds, 1,000 and 10,000 runs
#   ROUNDS=1 DURATION_S=5 SCALES=1000 bash bench/pipeline.sh   # a quick look
#
# Builds loadtest-api, loadtest-writer and the bench driver (tests/e2e/src/bin/pipeline_bench.rs)
# with --release, then runs the driver against the shared RabbitMQ (127.0.0.1:5672) and
# InfluxDB 1.x (127.0.0.1:8086). It prints a table of ratios, the CPU per message of RabbitMQ,
# the API or writer and the driver on each side, and the acceptance lines (docs/performance.md). Everything it creates (exchanges, queues and streams under a unique
# exchange name per phase, InfluxDB databases) is removed at the end, also on failure or ctrl-c.
#
# Settings (environment): ROUNDS (3), CONC concurrent senders (64), DURATION_S per ingest side
# (10), CONSUME_RUNS (500) and CONSUME_MSGS (60000) for the consume phase, SCALES (1000,10000),
# SCALE_TICKS measured per scale (3), SNAPSHOT_S (15), STATS_S (5), PHASES (ingest,consume,scale:
# which to run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[bench] $*" >&2; }

for svc in 127.0.0.1:5672 127.0.0.1:8086; do
  if ! (exec 3<>"/dev/tcp/${svc%:*}/${svc#*:}") 2>/dev/null; then
    log "$svc is not reachable: start it with 'source .ci/services.sh && ensure_rabbitmq' (or ensure_influxdb)"
    exit 1
  fi
done

log "building (release): loadtest-api, loadtest-writer, pipeline_bench"
cargo build --release --locked -q -p loadtest-api -p loadtest-writer -p loadtest-e2e --bins

log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec target/release/pipeline_bench
