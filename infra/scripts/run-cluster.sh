#!/usr/bin/env bash
# Starts one 5-node load test on Kubernetes and prints its run id.
#
# Creates the Indexed Job of infra/k8s/loadgen (the test is in infra/k8s/loadgen/run.env) under
# a fresh name, which is also the run key its 5 pods register with, so they form one run; then
# waits until a node has registered and prints the run id the pipeline gave it on stdout (the
# rest goes to stderr). Needs kubectl with access to the cluster, and infra/k8s applied.
#
# Usage: infra/scripts/run-cluster.sh [--print] [--namespace NS] [--timeout SECONDS]
#   --print       print the manifests it would apply and exit (CI validates them)
#   --namespace   where infra/k8s runs (default loadtest)
#   --timeout     how long to wait for the run id (default 300)
set -euo pipefail
cd "$(dirname "$0")/../.."

ns=loadtest
timeout=300
print=0
while [ $# -gt 0 ]; do
  case "$1" in
    --print) print=1 ;;
    --namespace) ns=$2; shift ;;
    --timeout) timeout=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "run-cluster.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

job="loadgen-$(date -u +%Y%m%d-%H%M%S)-$((RANDOM % 1000))"
# The Job's own `metadata.name` is the only line of the rendered manifests that reads exactly
# "  name: loadgen" (the ConfigMap is loadgen-run-<hash>, the container is indented deeper).
manifests=$(kubectl kustomize infra/k8s/loadgen \
  | sed -e "s/^  name: loadgen\$/  name: $job/" -e "s/^  namespace: loadtest\$/  namespace: $ns/")
if [ "$print" = 1 ]; then
  printf '%s\n' "$manifests"
  exit 0
fi

printf '%s\n' "$manifests" | kubectl apply -n "$ns" -f - >&2
echo "Job $job started: 5 nodes, run key $job" >&2

selector="batch.kubernetes.io/job-name=$job"
deadline=$((SECONDS + timeout))
run_id=
while [ -z "$run_id" ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "no node registered within ${timeout}s; look at: kubectl -n $ns describe job $job" >&2
    exit 1
  fi
  sleep 3
  logs=$(kubectl -n "$ns" logs -l "$selector" --tail=-1 --max-log-requests=5 2>/dev/null || true)
  run_id=$(printf '%s\n' "$logs" | awk '/Registered run/ && !found {
    for (i = 1; i <= NF; i++) if (length($i) == 36 && $i ~ /^[0-9a-f-]+$/) { print $i; found = 1; break } }')
done

cat >&2 <<INFO
Run id (the event_id tag in InfluxDB):
INFO
echo "$run_id"
cat >&2 <<INFO
Follow:  kubectl -n $ns logs -f -l $selector --max-log-requests=5
Wait:    kubectl -n $ns wait --for=condition=complete job/$job --timeout=2h
INFO
