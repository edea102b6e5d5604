#!/usr/bin/env bash
# Starts one test on the Locust cluster of infra/k8s/locust and prints its run id.
#
# The Locust master (Deployment locust-master) stays up between tests. This runs the plugin's
# `python -m locust_consumer.swarm` in the master's pod: it waits until every worker of the
# Deployment locust-worker is connected, starts the test of infra/k8s/locust/run.env as applied
# (ConfigMap locust-run: the target, users and spawn rate in total, the run time) through
# Locust's web UI, and waits until the pipeline has registered it. The run id goes to stdout
# (the rest to stderr), as infra/scripts/run-cluster.sh does for loadgen. Needs kubectl with
# access to the cluster, and infra/k8s and infra/k8s/locust applied.
#
# Usage: infra/scripts/run-locust-cluster.sh [--dry-run] [--namespace NS] [--timeout SECONDS]
#                                            [-- SWARM OPTIONS]
#   --dry-run     print the commands it would run, and exit
#   --namespace   where infra/k8s runs (default loadtest)
#   --timeout     how long to wait for the workers, then for the registration (default 300)
#   after --      options of this test only, over run.env's: --users 100 --spawn-rate 20
#                 --run-time 10m --host URL (python -m locust_consumer.swarm --help)
set -euo pipefail

ns=loadtest
timeout=300
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --namespace) ns=$2; shift ;;
    --timeout) timeout=$2; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run-locust-cluster.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$dry_run" = 1 ]; then
  workers="\$(kubectl -n $ns get deployment locust-worker -o jsonpath={.spec.replicas})"
else
  kubectl -n "$ns" rollout status deployment/locust-master --timeout="${timeout}s" >&2
  workers=$(kubectl -n "$ns" get deployment locust-worker -o jsonpath='{.spec.replicas}')
fi
swarm=(kubectl -n "$ns" exec deployment/locust-master -c locust --
  python -m locust_consumer.swarm --workers "$workers" --timeout "$timeout" "$@")
if [ "$dry_run" = 1 ]; then
  echo "kubectl -n $ns rollout status deployment/locust-master --timeout=${timeout}s"
  printf '%s ' "${swarm[@]}"
  echo
  exit 0
fi

# swarm prints its progress on stderr and the run id alone on stdout.
run_id=$("${swarm[@]}")

cat >&2 <<INFO
Run id (the event_id tag in InfluxDB):
INFO
echo "$run_id"
cat >&2 <<INFO
Follow:  kubectl -n $ns logs -f deployment/locust-master
Watch:   kubectl -n $ns port-forward service/locust-master 8089   (then http://127.0.0.1:8089)
Stop:    kubectl -n $ns exec deployment/locust-master -c locust -- python -c \\
           "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8089/stop')"
INFO
