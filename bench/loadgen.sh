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
# Further sections (SECTIONS, default all: "pipeline tls h2 plain memory"), each with its rounds
# interleaved tool by tool:
# - tls: HTTPS (TLS 1.3, self-signed certificate, verification off: --insecure / -k) at CONNS
#   connections, loadgen vs oha vs wrk, same nginx (its `ssl` port).
# - h2: HTTP/2 over TLS at CONNS connections, one stream each: loadgen --http2 vs oha --http2
#   (and h2load from Debian's nghttp2-client, when installed).
# - plain: plain HTTP at each of PLAIN_CONNS (default "4 50 1000") connections: loadgen vs
#   wrk vs oha.
# - memory: loadgen's peak RSS at MEM_USERS (default 10000) users against at 100 users, on
#   plain HTTP and HTTPS, each run for a fixed MEM_REQUESTS requests checked against nginx's
#   own request counter (stub_status).
#
# Each measurement also records nginx's CPU seconds meanwhile (its worker's utime + stime from
# /proc) and how busy that kept nginx's core (CPU seconds over the tool's wall time): near 100 %
# nginx is the limit, and requests/s ratios near 1.0x say so rather than which client is faster.
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
SECTIONS=${SECTIONS:-pipeline tls h2 plain memory}
PLAIN_CONNS=${PLAIN_CONNS:-4 50 1000}
MEM_USERS=${MEM_USERS:-10000}
MEM_REQUESTS=${MEM_REQUESTS:-500000}
MEM_SPAWN_RATE=${MEM_SPAWN_RATE:-2000}
has() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

log() { echo "[bench] $*" >&2; }

rm -rf "$OUT"
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$OUT/nginx.pid" ]; then kill "$(cat "$OUT/nginx.pid")" 2>/dev/null || true; fi
  # What the pipeline section created: its database and its exchange's queues.
  if [ -n "${BENCH_DB:-}" ]; then
    curl -s -XPOST http://127.0.0.1:8086/query --data-urlencode "q=DROP DATABASE $BENCH_DB" >/dev/null || true
  fi
  if [ -n "${LOADTEST__AMQP__EXCHANGE:-}" ] && command -v rabbitmqctl >/dev/null; then
    for q in writer dead writer.state; do
      rabbitmqctl -q delete_queue "$LOADTEST__AMQP__EXCHANGE.$q" >/dev/null 2>&1 || true
    done
  fi
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
if has pipeline; then
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
else
  log "cargo build --release (loadgen)"
  cargo build --release -q -p loadgen
fi
if { has h2 && ! command -v h2load >/dev/null; } && [ -z "${NO_H2LOAD:-}" ]; then
  log "apt-get install nghttp2-client (h2load, a second HTTP/2 baseline)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null || true
fi
BIN=target/release

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- nginx, one worker, one core
NGINX_PORT=$(free_port)
TLS_PORT=$(free_port)
STATUS_PORT=$(free_port)
# A self-signed P-256 certificate for 127.0.0.1 (the clients skip verification).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
cat >"$OUT/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity $(python3 -c "print(format(1 << $SERVER_CPU, 'b'))");
worker_rlimit_nofile 40000;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log warn;
events { worker_connections 30000; }
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
    listen 127.0.0.1:$NGINX_PORT backlog=16384;
    location / { default_type text/plain; return 200 "hello\n"; }
  }
  server {
    listen 127.0.0.1:$TLS_PORT ssl http2 backlog=16384;
    ssl_certificate $OUT/cert.pem;
    ssl_certificate_key $OUT/key.pem;
    ssl_protocols TLSv1.3;
    location / { default_type text/plain; return 200 "hello\n"; }
  }
  server {
    listen 127.0.0.1:$STATUS_PORT;
    location / { stub_status; }
  }
}
EOF
mkdir -p "$OUT/nginx-tmp"
taskset -c "$SERVER_CPU" nginx -c "$OUT/nginx.conf"
URL="http://127.0.0.1:$NGINX_PORT/"
TLS_URL="https://127.0.0.1:$TLS_PORT/"
for _ in $(seq 50); do curl -sf "$URL" >/dev/null && break; sleep 0.1; done
curl -sf "$URL" >/dev/null || { log "nginx did not start; see $OUT/nginx-error.log"; exit 1; }
log "nginx on $URL (worker pinned to CPU $SERVER_CPU)"
# nginx's worker(s): their CPU time during each measurement shows whether nginx's core is the
# limit (busy near 100 % of the measurement's wall time) or the client is.
NGINX_WORKERS=$(pgrep -P "$(cat "$OUT/nginx.pid")" | tr '\n' ' ')

# ---------------------------------------------------------------- the pipeline (stats on)
if has pipeline; then
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  log "RabbitMQ is not reachable on 127.0.0.1:5672; start it with: rabbitmq-server -detached"
  exit 1
fi
ID=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:8])')
export LOADTEST__AMQP__EXCHANGE="bench-$ID"
export LOADTEST__AUTH__TOKEN_SECRET="bench-secret-$ID"
API_KEY="bench-key-$ID"
if [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8086/ping)" = 204 ]; then
  BENCH_DB="loadgen_bench_$ID"
  curl -s -XPOST http://127.0.0.1:8086/query --data-urlencode "q=CREATE DATABASE $BENCH_DB" >/dev/null
  SINK=(LOADTEST__SINK__KIND=v1 LOADTEST__SINK__URL=http://127.0.0.1:8086 "LOADTEST__SINK__DATABASE=$BENCH_DB")
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

fi
# ---------------------------------------------------------------- measuring
RESULTS="$OUT/measurements.csv"
echo "round,tool,rps,cpu_s,p99_ms,pipeline_cpu_s,server_cpu_s,server_busy_pct,others_server_pct,others_client_pct" >"$RESULTS"
TICK=$(getconf CLK_TCK)
server_ticks() { # utime + stime of nginx's workers, clock ticks
  local t=0 p
  for p in $NGINX_WORKERS; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
core_ticks() { # busy clock ticks of CPU $1 (all processes), from /proc/stat
  awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

# timed NAME CMD...: runs CMD pinned to CLIENT_CPU; leaves "wall user sys" in $OUT/NAME.time,
# and for the next `record`: nginx's CPU seconds meanwhile (SERVER_CPU_S) and as a share of
# CMD's wall time (SERVER_BUSY_PCT), and how much of the server's and the client's core other
# processes took meanwhile (OTHERS_SERVER_PCT, OTHERS_CLIENT_PCT: the machine's noise; approximate,
# as /proc/stat's per-core time is sampled at each tick while the processes' CPU time is exact).
timed() {
  local name=$1; shift
  local before; before=$(server_ticks)
  local s0 c0; s0=$(core_ticks "$SERVER_CPU"); c0=$(core_ticks "$CLIENT_CPU")
  /usr/bin/time -f "%e %U %S" -o "$OUT/$name.time" taskset -c "$CLIENT_CPU" "$@" \
    >"$OUT/$name.out" 2>"$OUT/$name.err" || {
      log "$name failed; see $OUT/$name.err"; tail -5 "$OUT/$name.err" >&2; return 1; }
  SERVER_CPU_S=$(awk -v a="$before" -v b="$(server_ticks)" -v t="$TICK" 'BEGIN {printf "%.2f", (b - a) / t}')
  SERVER_BUSY_PCT=$(awk -v c="$SERVER_CPU_S" '{printf "%.1f", ($1 > 0 ? 100 * c / $1 : 0)}' "$OUT/$name.time")
  OTHERS_SERVER_PCT=$(awk -v a="$s0" -v b="$(core_ticks "$SERVER_CPU")" -v t="$TICK" -v c="$SERVER_CPU_S" \
    '{printf "%.1f", ($1 > 0 ? 100 * ((b - a) / t - c) / $1 : 0)}' "$OUT/$name.time")
  OTHERS_CLIENT_PCT=$(awk -v a="$c0" -v b="$(core_ticks "$CLIENT_CPU")" -v t="$TICK" \
    '{printf "%.1f", ($1 > 0 ? 100 * ((b - a) / t - $2 - $3) / $1 : 0)}' "$OUT/$name.time")
}
cpu_of() { awk '{printf "%.3f", $2 + $3}' "$OUT/$1.time"; }
record() {
  echo "$1,$2,$3,$4,${5:-},${6:-},${SERVER_CPU_S:-},${SERVER_BUSY_PCT:-},${OTHERS_SERVER_PCT:-},${OTHERS_CLIENT_PCT:-}" >>"$RESULTS"
  log "round $1 $2: $3 req/s, $4 CPU s${5:+, p99 $5 ms}${6:+, pipeline $6 CPU s}, nginx ${SERVER_CPU_S:-?} CPU s (${SERVER_BUSY_PCT:-?} % busy; others took ${OTHERS_SERVER_PCT:-?} % of its core, ${OTHERS_CLIENT_PCT:-?} % of the client's)"
}

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

if has pipeline; then
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
fi

# ---------------------------------------------------------------- the closing table
if has pipeline; then
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
fi
# ---------------------------------------------------------------- HTTPS, HTTP/2, plain HTTP
# m_TOOL ROUND NAME CONNS URL [extra args]: one measurement, recorded under NAME.
m_wrk() {
  local r=$1 n=$2 c=$3 u=$4; shift 4
  timed "$n-r$r" wrk -t1 -c"$c" -d"${DURATION}s" "$@" "$u"
  record "$r" "$n" "$(awk '/^Requests\/sec:/ {print $2}' "$OUT/$n-r$r.out")" "$(cpu_of "$n-r$r")"
}
m_oha() {
  [ -n "$OHA" ] || return 0
  local r=$1 n=$2 c=$3 u=$4; shift 4
  timed "$n-r$r" "$OHA" -z "${DURATION}s" -c "$c" --no-tui --output-format json "$@" "$u"
  record "$r" "$n" "$(json_get "$OUT/$n-r$r.out" "d['summary']['requestsPerSec']")" "$(cpu_of "$n-r$r")"
}
m_loadgen() {
  local r=$1 n=$2 c=$3 u=$4; shift 4
  timed "$n-r$r" "$BIN/loadgen" --host "${u%/}" -u "$c" -r 1000000 -t "${DURATION}s" \
    --only-summary --json "$OUT/$n-r$r.json" "$@"
  local j="$OUT/$n-r$r.json"
  local failures; failures=$(json_get "$j" "d['total']['failures']")
  [ "$failures" = 0 ] || log "$n round $r: $failures failed requests (see $OUT/$n-r$r.out)"
  grep -h '^Protocols:' "$OUT/$n-r$r.out" >&2 || true
  record "$r" "$n" "$(json_get "$j" "d['total']['requests'] / d['run']['elapsedS']")" "$(cpu_of "$n-r$r")"
}
m_h2load() {
  local r=$1 n=$2 c=$3 u=$4; shift 4
  timed "$n-r$r" h2load -t1 -c "$c" -m 1 -D "$DURATION" "$@" "$u"
  record "$r" "$n" "$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$OUT/$n-r$r.out")" "$(cpu_of "$n-r$r")"
}
# rotated ROUND CMD...: runs the commands (each one quoted string) starting at a different one
# each round, so no tool always runs first or last.
rotated() {
  local r=$1; shift
  local cmds=("$@")
  local k=${#cmds[@]} i
  for i in $(seq 0 $((k - 1))); do eval "${cmds[$(((i + r) % k))]}"; done
}

if has tls || has h2 || has plain; then
  log "warm-up (TLS)"
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d2s "$TLS_URL" >/dev/null
  for r in $(seq "$ROUNDS"); do
    if has tls; then
      rotated "$r" \
        "m_wrk $r tls-wrk $CONNS $TLS_URL" \
        "m_oha $r tls-oha $CONNS $TLS_URL --insecure" \
        "m_loadgen $r tls-loadgen $CONNS $TLS_URL --insecure"
    fi
    if has h2; then
      h2cmds=("m_oha $r h2-oha $CONNS $TLS_URL --insecure --http2" "m_loadgen $r h2-loadgen $CONNS $TLS_URL --insecure --http2")
      command -v h2load >/dev/null && h2cmds+=("m_h2load $r h2-h2load $CONNS $TLS_URL")
      rotated "$r" "${h2cmds[@]}"
    fi
    if has plain; then
      for c in $PLAIN_CONNS; do
        rotated "$r" \
          "m_wrk $r plain$c-wrk $c $URL" \
          "m_oha $r plain$c-oha $c $URL" \
          "m_loadgen $r plain$c-loadgen $c $URL"
      done
    fi
  done
fi

# ---------------------------------------------------------------- loadgen's memory per user
MEMORY="$OUT/memory.csv"
echo "round,run,users,max_rss_kb,requests,failures,nginx_requests" >"$MEMORY"
nginx_requests() { curl -s "http://127.0.0.1:$STATUS_PORT/" | awk 'NR == 3 {print $3}'; }
mem_run() { # ROUND NAME USERS URL [extra args]
  local r=$1 n=$2 u=$3 url=$4; shift 4
  local before after
  before=$(nginx_requests)
  /usr/bin/time -f "%e %U %S %M" -o "$OUT/$n-r$r.time" taskset -c "$CLIENT_CPU" \
    "$BIN/loadgen" --host "${url%/}" -u "$u" -r "$MEM_SPAWN_RATE" -n "$MEM_REQUESTS" --only-summary \
    --json "$OUT/$n-r$r.json" "$@" >"$OUT/$n-r$r.out" 2>"$OUT/$n-r$r.err" || {
      log "$n failed; see $OUT/$n-r$r.err"; tail -5 "$OUT/$n-r$r.err" >&2; return 1; }
  after=$(nginx_requests)
  local j="$OUT/$n-r$r.json"
  # The status request that read `after` is counted by nginx too.
  echo "$r,$n,$u,$(awk '{print $4}' "$OUT/$n-r$r.time"),$(json_get "$j" "d['total']['requests']"),$(json_get "$j" "d['total']['failures']"),$((after - before - 1))" >>"$MEMORY"
  log "memory round $r $n: $(tail -1 "$MEMORY")"
}
if has memory; then
  for r in $(seq "$ROUNDS"); do
    mem_run "$r" plain-100 100 "$URL"
    mem_run "$r" "plain-$MEM_USERS" "$MEM_USERS" "$URL"
    mem_run "$r" tls-100 100 "$TLS_URL" --insecure
    mem_run "$r" "tls-$MEM_USERS" "$MEM_USERS" "$TLS_URL" --insecure
  done
fi

python3 - "$RESULTS" "$MEMORY" "$ROUNDS" "$DURATION" "$CONNS" "$PLAIN_CONNS" "$MEM_USERS" "$SECTIONS" "$MEM_REQUESTS" "$MEM_SPAWN_RATE" <<'EOF' | tee "$OUT/results-more.md"
import csv, statistics, sys
path, mem_path, rounds, duration, conns, plain_conns, mem_users, sections, mem_requests, mem_spawn = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
sections = sections.split()
def vals(tool, col):
    return [float(r[col]) for r in rows if r["tool"] == tool and r[col] not in ("", None)]
def med(tool, col):
    v = vals(tool, col)
    return statistics.median(v) if v else float("nan")
def eff(tool):
    cpu = med(tool, "cpu_s")
    return med(tool, "rps") * float(duration) / cpu if cpu else float("nan")
checks = []
def table(title, lg, others):
    print(f"## {title}")
    print()
    print("| tool | requests/s (median) | each round | CPU s | requests per CPU-second | nginx CPU s | nginx busy, each round | others on server/client core (approx.), each round | loadgen's requests/s ratio | loadgen's req/CPU-s ratio |")
    print("|---|---:|---|---:|---:|---:|---|---|---:|---:|")
    for t in [lg] + others:
        if not vals(t, "rps"):
            continue
        each = ", ".join(f"{v:,.0f}" for v in vals(t, "rps"))
        busy = ", ".join(f"{v:.0f} %" for v in vals(t, "server_busy_pct"))
        others = ", ".join(f"{a:.0f}/{b:.0f} %" for a, b in zip(vals(t, "others_server_pct"), vals(t, "others_client_pct")))
        print(f"| {t} | {med(t, 'rps'):,.0f} | {each} | {med(t, 'cpu_s'):.2f} | {eff(t):,.0f} | {med(t, 'server_cpu_s'):.2f} | {busy} | {others} | {med(lg, 'rps') / med(t, 'rps'):.2f}x | {eff(lg) / eff(t):.2f}x |")
    print()
    print("nginx busy: nginx's CPU time during the tool's run over the run's wall time (one worker on one core: 100 % is its ceiling). Others: the share of the server's and the client's core that other processes took meanwhile, a noise indicator (near 0 % on a quiet machine): the core's busy time in /proc/stat, which the kernel samples at each tick, less the measured processes' own CPU time, which it measures exactly, so it is approximate: off by up to 30 points (even negative) when the machine is busy.")
    print()
if "tls" in sections:
    table(f"HTTPS (TLS 1.3, HTTP/1.1): {conns} connections, {duration} s, medians of {rounds} interleaved rounds", "tls-loadgen", ["tls-oha", "tls-wrk"])
    checks += [
        ("HTTPS: loadgen requests/s >= 1.1x oha", med("tls-loadgen", "rps") >= 1.1 * med("tls-oha", "rps")),
        ("HTTPS: loadgen requests/s >= 0.9x wrk", med("tls-loadgen", "rps") >= 0.9 * med("tls-wrk", "rps")),
        ("HTTPS: loadgen requests per CPU-second >= 1.1x oha", eff("tls-loadgen") >= 1.1 * eff("tls-oha")),
    ]
if "h2" in sections:
    table(f"HTTP/2 over TLS 1.3: {conns} connections, one stream each, {duration} s, medians of {rounds} interleaved rounds", "h2-loadgen", ["h2-oha", "h2-h2load"])
    checks += [("HTTP/2: loadgen requests/s >= 1.1x oha --http2", med("h2-loadgen", "rps") >= 1.1 * med("h2-oha", "rps"))]
if "plain" in sections:
    for c in plain_conns.split():
        table(f"Plain HTTP/1.1: {c} connections, {duration} s, medians of {rounds} interleaved rounds", f"plain{c}-loadgen", [f"plain{c}-wrk", f"plain{c}-oha"])
        checks += [(f"plain HTTP, {c} connections: loadgen requests/s >= 0.95x wrk", med(f"plain{c}-loadgen", "rps") >= 0.95 * med(f"plain{c}-wrk", "rps"))]
if "memory" in sections:
    mem = list(csv.DictReader(open(mem_path)))
    print(f"## loadgen's memory: {mem_users} users against 100 users, peak RSS, {mem_requests} requests per run, spawn rate {mem_spawn}/s")
    print()
    print("| run | users | peak RSS (MiB) | requests | failures | nginx counted | exact |")
    print("|---|---:|---:|---:|---:|---:|---|")
    runs = []
    for r in mem:
        if r["run"] not in runs:
            runs.append(r["run"])
    rss = {}
    for run in runs:
        rs = [r for r in mem if r["run"] == run]
        m = statistics.median(float(r["max_rss_kb"]) for r in rs)
        rss[run] = m
        # Exact: loadgen counted the N requests asked for, and its answered ones (N - failures:
        # timeouts and connection errors never reach nginx's counter) are nginx's count.
        for x in rs:
            ok = int(x["requests"]) == int(mem_requests) and int(x["requests"]) - int(x["failures"]) == int(x["nginx_requests"])
            print(f"| {run} (round {x['round']}) | {x['users']} | {float(x['max_rss_kb']) / 1024:.1f} | {x['requests']} | {x['failures']} | {x['nginx_requests']} | {'yes' if ok else 'NO'} |")
            checks.append((f"memory run {run}, round {x['round']}: loadgen counted {mem_requests} and its answered requests are nginx's count", ok))
    print()
    for kind in ["plain", "tls"]:
        big, small = rss.get(f"{kind}-{mem_users}"), rss.get(f"{kind}-100")
        if big is None or small is None:
            continue
        per_user = (big - small) / (int(mem_users) - 100)
        print(f"- {kind}: {per_user:.1f} KB per user ((median peak RSS at {mem_users} users - at 100 users) / {int(mem_users) - 100})")
        if kind == "plain":
            checks.append((f"{mem_users} users (plain HTTP): <= 20 KB per user", per_user <= 20))
    print()
print("Acceptance:")
for name, ok in checks:
    print(f"- {'PASS' if ok else 'FAIL'}: {name}")
EOF
log "raw measurements: $RESULTS, $MEMORY; outputs in $OUT"
