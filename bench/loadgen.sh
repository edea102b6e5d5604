#!/usr/bin/env bash
# loadgen against the tools users would otherwise pick, side by side, on one machine.
#
#   bash bench/loadgen.sh            # 3 interleaved rounds, 20 s per tool, 50 connections
#   ROUNDS=1 DURATION=5 bash bench/loadgen.sh   # a quick look
#
# Target: nginx on 127.0.0.1 (one worker, pinned to SERVER_CPU) answering a 6-byte body.
# Each load generator is pinned to CLIENT_CPU and measured with /usr/bin/time (CPU seconds =
# user + system). Per round, in this order: wrk, oha, Locust (FastHttpUser, one process),
# loadgen (stats published through loadtest-api -> RabbitMQ -> loadtest-writer, the default
# transport), and loadgen without publishing (to price the publishing). Then a fixed-rate round:
# RATE requests/s, coordinated omission corrected, oha (-q RATE --latency-correction) against
# loadgen (--arrival-rate RATE), comparing p99 and CPU. The closing table has the medians of the
# rounds and loadgen's ratios to each tool.
#
# Everything is built and installed before the first measurement: wrk and nginx (Debian),
# oha (crates.io, `cargo install oha`), Locust (PyPI), and the release binaries of this
# repository. RabbitMQ on 127.0.0.1:5672 must be up (`rabbitmq-server -detached`); the writer
# writes to InfluxDB 1.x on 127.0.0.1:8086 when it answers, else to a line-protocol file.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20}
CONNS=${CONNS:-50}
RATE=${RATE:-20000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OUT=${OUT:-/tmp/loadgen-bench}
LOCUST_VERSION=${LOCUST_VERSION:-2.32.4}

log() { echo "[bench] $*" >&2; }

rm -rf "$OUT"
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$OUT/nginx.pid" ]; then kill "$(cat "$OUT/nginx.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- build and install first
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || need_apt+=(nginx-light)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# oha is optional: OHA=path, or oha on PATH; without it its rows are skipped
# (INSTALL_OHA=1 installs it with `cargo install oha`, which takes a while).
OHA=${OHA:-$(command -v oha || true)}
if [ -z "$OHA" ] && [ "${INSTALL_OHA:-0}" = 1 ]; then
  log "cargo install oha (takes a while)"
  cargo install oha --locked
  OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
fi
[ -n "$OHA" ] || log "oha not found (set OHA=path or INSTALL_OHA=1): its rows are skipped"
# Locust in a virtual environment under $LOADTEST_CI_DIR, never in the system Python.
LOCUST_VENV=${LOADTEST_CI_DIR:-/tmp/loadtest-ci}/bench-venv
if [ "$("$LOCUST_VENV/bin/python" -m pip show locust 2>/dev/null | awk '/^Version:/{print $2}')" != "$LOCUST_VERSION" ]; then
  [ -x "$LOCUST_VENV/bin/python" ] || python3 -m venv "$LOCUST_VENV"
  log "pip install locust==$LOCUST_VERSION (into $LOCUST_VENV)"
  "$LOCUST_VENV/bin/python" -m pip install -q --disable-pip-version-check "locust==$LOCUST_VERSION"
fi
export PATH="$LOCUST_VENV/bin:$PATH"
log "cargo build --release (loadgen, loadtest-api, loadtest-writer)"
cargo build --release -q -p loadgen -p loadtest-api -p loadtest-writer
BIN=target/release

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- nginx, one worker, one core
NGINX_PORT=$(free_port)
cat >"$OUT/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity $(python3 -c "print(format(1 << $SERVER_CPU, 'b'))");
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path $OUT/nginx-tmp;
  proxy_temp_path $OUT/nginx-tmp;
  fastcgi_temp_path $OUT/nginx-tmp;
  uwsgi_temp_path $OUT/nginx-tmp;
  scgi_temp_path $OUT/nginx-tmp;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { default_type text/plain; return 200 "hello\n"; }
  }
}
EOF
mkdir -p "$OUT/nginx-tmp"
taskset -c "$SERVER_CPU" nginx -c "$OUT/nginx.conf"
URL="http://127.0.0.1:$NGINX_PORT/"
for _ in $(seq 50); do curl -sf "$URL" >/dev/null && break; sleep 0.1; done
curl -sf "$URL" >/dev/null || { log "nginx did not start; see $OUT/nginx-error.log"; exit 1; }
log "nginx on $URL (worker pinned to CPU $SERVER_CPU)"

# ---------------------------------------------------------------- the pipeline (stats on)
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  log "RabbitMQ is not reachable on 127.0.0.1:5672; start it with: rabbitmq-server -detached"
  exit 1
fi
ID=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:8])')
export LOADTEST__AMQP__EXCHANGE="bench-$ID"
export LOADTEST__AUTH__TOKEN_SECRET="bench-secret-$ID"
API_KEY="bench-key-$ID"
if [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8086/ping)" = 204 ]; then
  curl -s -XPOST http://127.0.0.1:8086/query --data-urlencode "q=CREATE DATABASE loadgen_bench" >/dev/null
  SINK=(LOADTEST__SINK__KIND=v1 LOADTEST__SINK__URL=http://127.0.0.1:8086 LOADTEST__SINK__DATABASE=loadgen_bench)
else
  SINK=(LOADTEST__SINK__KIND=file "LOADTEST__SINK__PATH=$OUT/results.lp")
fi
env "${SINK[@]}" LOADTEST__AMQP__QUEUE_EXPIRES_MS=600000 LOADTEST__METRICS__LISTEN=127.0.0.1:0 taskset -c "$SERVER_CPU" "$BIN/loadtest-writer" >"$OUT/writer.log" 2>&1 &
PIDS+=($!)
API_PORT=$(free_port)
LOADTEST__AUTH__API_KEYS="$API_KEY" taskset -c "$SERVER_CPU" "$BIN/loadtest-api" --listen "127.0.0.1:$API_PORT" >"$OUT/api.log" 2>&1 &
PIDS+=($!)
API="http://127.0.0.1:$API_PORT"
for _ in $(seq 100); do curl -sf "$API/readyz" >/dev/null && grep -q consuming "$OUT/writer.log" && break; sleep 0.2; done
curl -sf "$API/readyz" >/dev/null || { log "the API is not ready; see $OUT/api.log"; exit 1; }
log "loadtest-api on $API, writer consuming (exchange $LOADTEST__AMQP__EXCHANGE)"

cat >"$OUT/locustfile.py" <<'EOF'
from locust import FastHttpUser, constant, task


class Bench(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self):
        self.client.get("/")
EOF

# ---------------------------------------------------------------- measuring
RESULTS="$OUT/measurements.csv"
echo "round,tool,rps,cpu_s,p99_ms,pipeline_cpu_s" >"$RESULTS"

# timed NAME CMD...: runs CMD pinned to CLIENT_CPU; leaves "wall user sys" in $OUT/NAME.time
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$OUT/$name.time" taskset -c "$CLIENT_CPU" "$@" \
    >"$OUT/$name.out" 2>"$OUT/$name.err" || {
      log "$name failed; see $OUT/$name.err"; tail -5 "$OUT/$name.err" >&2; return 1; }
}
cpu_of() { awk '{printf "%.3f", $2 + $3}' "$OUT/$1.time"; }
record() { echo "$1,$2,$3,$4,${5:-},${6:-}" >>"$RESULTS"; log "round $1 $2: $3 req/s, $4 CPU s${5:+, p99 $5 ms}${6:+, pipeline $6 CPU s}"; }

# The pipeline's processes (loadtest-api, loadtest-writer, RabbitMQ, InfluxDB): their CPU use
# while loadgen runs is the server-side price of publishing (they share nginx's machine).
# shellcheck disable=SC2207 # pgrep prints one pid per line: splitting is what we want
PIPELINE_PIDS=("${PIDS[@]}" $(pgrep -f beam.smp || true) $(pgrep -x influxd || true))
pipeline_ticks() { # utime + stime of the pipeline's processes, clock ticks
  local t=0 p
  for p in "${PIPELINE_PIDS[@]}"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
TICK=$(getconf CLK_TCK)

json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$@"; }

run_wrk() {
  timed "wrk-r$1" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$URL"
  record "$1" wrk "$(awk '/^Requests\/sec:/ {print $2}' "$OUT/wrk-r$1.out")" "$(cpu_of "wrk-r$1")"
}
run_oha() {
  timed "oha-r$1" "$OHA" -z "${DURATION}s" -c "$CONNS" --no-tui --output-format json "$URL"
  record "$1" oha "$(json_get "$OUT/oha-r$1.out" "d['summary']['requestsPerSec']")" "$(cpu_of "oha-r$1")"
}
run_locust() {
  timed "locust-r$1" locust -f "$OUT/locustfile.py" --headless -u "$CONNS" -r "$CONNS" \
    -t "${DURATION}s" --host "${URL%/}" --only-summary --csv "$OUT/locust-r$1" --loglevel WARNING
  record "$1" locust "$(python3 - "$OUT/locust-r$1_stats.csv" <<'EOF'
import csv, sys
for row in csv.DictReader(open(sys.argv[1])):
    if row["Name"] == "Aggregated":
        print(row["Requests/s"])
EOF
)" "$(cpu_of "locust-r$1")"
}
run_loadgen() { # ROUND TOOL [extra args]
  local r=$1 tool=$2; shift 2
  local before; before=$(pipeline_ticks)
  timed "$tool-r$r" "$BIN/loadgen" --host "${URL%/}" -u "$CONNS" -r 10000 -t "${DURATION}s" \
    --only-summary --json "$OUT/$tool-r$r.json" "$@"
  local pipeline; pipeline=$(awk -v a="$before" -v b="$(pipeline_ticks)" -v t="$TICK" 'BEGIN {printf "%.3f", (b - a) / t}')
  record "$r" "$tool" "$(json_get "$OUT/$tool-r$r.json" "d['total']['requests'] / d['run']['elapsedS']")" "$(cpu_of "$tool-r$r")" "" "$pipeline"
}
run_oha_rate() {
  timed "oha-rate-r$1" "$OHA" -z "${DURATION}s" -c "$CONNS" -q "$RATE" --latency-correction \
    --no-tui --output-format json "$URL"
  record "$1" oha-rate "$(json_get "$OUT/oha-rate-r$1.out" "d['summary']['requestsPerSec']")" \
    "$(cpu_of "oha-rate-r$1")" "$(json_get "$OUT/oha-rate-r$1.out" "d['latencyPercentiles']['p99'] * 1000")"
}
run_loadgen_rate() {
  timed "loadgen-rate-r$1" "$BIN/loadgen" --host "${URL%/}" -u "$CONNS" --arrival-rate "$RATE" \
    -t "${DURATION}s" --only-summary --json "$OUT/loadgen-rate-r$1.json" \
    --consumer-host "$API" --api-key "$API_KEY"
  local j="$OUT/loadgen-rate-r$1.json"
  record "$1" loadgen-rate "$(json_get "$j" "d['total']['requests'] / d['run']['elapsedS']")" \
    "$(cpu_of "loadgen-rate-r$1")" "$(json_get "$j" "d['total']['percentilesMs']['99%']")"
}

log "warm-up"
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d2s "$URL" >/dev/null

for r in $(seq "$ROUNDS"); do
  run_wrk "$r"
  [ -z "$OHA" ] || run_oha "$r"
  run_locust "$r"
  # ABBA order (publishing first in odd rounds, last in even ones), so a drift of the
  # machine's speed during the run does not favour either.
  if [ $((r % 2)) = 1 ]; then
    run_loadgen "$r" loadgen --consumer-host "$API" --api-key "$API_KEY"
    run_loadgen "$r" loadgen-nopub
  else
    run_loadgen "$r" loadgen-nopub
    run_loadgen "$r" loadgen --consumer-host "$API" --api-key "$API_KEY"
  fi
  [ -z "$OHA" ] || run_oha_rate "$r"
  run_loadgen_rate "$r"
done

# ---------------------------------------------------------------- the closing table
python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$CONNS" "$RATE" <<'EOF' | tee "$OUT/results.md"
import csv, statistics, sys
path, rounds, duration, conns, rate = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
def med(tool, col):
    vals = [float(r[col]) for r in rows if r["tool"] == tool and r[col] not in ("", None)]
    return statistics.median(vals) if vals else float("nan")
tools = ["wrk", "oha", "locust", "loadgen", "loadgen-nopub"]
print(f"## Throughput: {conns} connections, {duration} s, medians of {rounds} interleaved rounds")
print()
print("| tool | requests/s | CPU s | requests per CPU-second | loadgen's requests/s ratio | loadgen's req/CPU-s ratio |")
print("|---|---:|---:|---:|---:|---:|")
lg_rps, lg_cpu = med("loadgen", "rps"), med("loadgen", "cpu_s")
lg_eff = lg_rps * float(duration) / lg_cpu if lg_cpu else float("nan")
for t in tools:
    rps, cpu = med(t, "rps"), med(t, "cpu_s")
    eff = rps * float(duration) / cpu if cpu else float("nan")
    print(f"| {t} | {rps:,.0f} | {cpu:.2f} | {eff:,.0f} | {lg_rps / rps:.2f}x | {lg_eff / eff:.2f}x |")
pub_cost = 1 - med("loadgen", "rps") / med("loadgen-nopub", "rps")
def spread(tool):
    vals = sorted(float(r["rps"]) for r in rows if r["tool"] == tool)
    return ", ".join(f"{v:,.0f}" for v in vals)
pipe_pub, pipe_nopub = med("loadgen", "pipeline_cpu_s"), med("loadgen-nopub", "pipeline_cpu_s")
# The pipeline's extra CPU, as a share of the server core's time during the run: the most
# requests/s it can take from nginx, which shares that core.
pipe_share = max(pipe_pub - pipe_nopub, 0.0) / float(duration)
print()
print(f"loadgen = stats published through the API every 5 s (the default transport); loadgen-nopub = the same without publishing.")
print(f"- requests/s, publishing on: {spread('loadgen')}; off: {spread('loadgen-nopub')} (each round's value, sorted)")
print(f"- publishing costs {pub_cost * 100:.1f} % of requests/s (difference of the medians)")
print(f"- CPU the pipeline's processes (API, writer, RabbitMQ, InfluxDB) used during a run: {pipe_pub:.2f} s with publishing, {pipe_nopub:.2f} s without: {pipe_share * 100:.2f} % of the server core")
print()
print(f"## Fixed rate: {rate} requests/s, {conns} connections, coordinated omission corrected")
print()
print("| tool | achieved requests/s | p99 (ms) | CPU s |")
print("|---|---:|---:|---:|")
for t in ["oha-rate", "loadgen-rate"]:
    print(f"| {t.replace('-rate', '')} | {med(t, 'rps'):,.0f} | {med(t, 'p99_ms'):.2f} | {med(t, 'cpu_s'):.2f} |")
print()
print("Acceptance:")
oha_rps, oha_cpu = med("oha", "rps"), med("oha", "cpu_s")
oha_eff = oha_rps * float(duration) / oha_cpu
checks = [
    ("loadgen requests/s >= 1.1x oha", lg_rps >= 1.1 * oha_rps),
    ("loadgen requests per CPU-second >= 1.1x oha", lg_eff >= 1.1 * oha_eff),
    ("loadgen requests/s >= 0.9x wrk", lg_rps >= 0.9 * med("wrk", "rps")),
    ("publishing stats costs <= 2 % of requests/s (medians)", pub_cost <= 0.02),
    ("publishing stats costs <= 2 % of the server core (pipeline CPU)", pipe_share <= 0.02),
    ("fixed rate: loadgen p99 <= oha p99", med("loadgen-rate", "p99_ms") <= med("oha-rate", "p99_ms")),
    ("fixed rate: loadgen CPU <= oha CPU", med("loadgen-rate", "cpu_s") <= med("oha-rate", "cpu_s")),
]
for name, ok in checks:
    print(f"- {'PASS' if ok else 'FAIL'}: {name}")
EOF
log "raw measurements: $RESULTS; outputs in $OUT"
