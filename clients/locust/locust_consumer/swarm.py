"""Starts one test on a running Locust master through its web UI and prints the run's id.

    python -m locust_consumer.swarm [--web http://127.0.0.1:8089] [--workers N]
        [--users N] [--spawn-rate R] [--run-time T] [--host URL] [--timeout S]

What infra/scripts/run-locust-cluster.sh runs inside the master's pod (the image has it), and
what works against any master whose locustfile imports the plugin, e.g. in compose:
``docker compose exec locust-master python -m locust_consumer.swarm --users 20 --run-time 1m``.

1. Waits until at least ``--workers`` workers are connected and ready (``GET /stats/requests``).
2. Refuses to start when a test is already running on the master.
3. Starts the test (``POST /swarm``: users, spawn rate, run time, host). The options default to
   the master's own Locust settings (``LOCUST_USERS``, ``LOCUST_SPAWN_RATE``,
   ``LOCUST_RUN_TIME``, ``LOCUST_HOST``), so in the pod it runs the test of run.env. Locust's
   master spreads the users over the workers (Locust's user distribution: 100 users over 7
   workers are 15, 15, 14, 14, 14, 14, 14).
4. Waits until the plugin has registered the run (``GET /consumer/run``, which the plugin adds
   to the web UI) and prints the run id on stdout; progress goes to stderr.

Exit codes: 0 started and registered; 1 it could not (the reason on stderr); 2 bad options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Optional, Sequence

#: How often the master is asked, seconds.
POLL_S = 1.0
#: Timeout of one HTTP request to the master, seconds.
REQUEST_TIMEOUT_S = 10.0
#: States of a Locust runner in which a test is going.
BUSY_STATES = frozenset({"spawning", "running", "stopping", "cleanup"})


class SwarmError(Exception):
    """The test could not be started or its run id not learnt; the message says why."""


def parse_args(argv: Optional[Sequence[str]], env: Optional[dict[str, str]] = None) -> argparse.Namespace:
    """The options, with defaults from ``env`` (the master's ``LOCUST_*`` settings)."""
    env = dict(os.environ if env is None else env)
    p = argparse.ArgumentParser(
        prog="python -m locust_consumer.swarm",
        description="Start one test on a running Locust master (its web UI's POST /swarm) and "
        "print the id the load-test pipeline gave the run. Defaults come from the master's own "
        "LOCUST_* settings.",
    )
    p.add_argument("--web", default="http://127.0.0.1:8089", help="The master's web UI (default %(default)s).")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="Wait until this many workers are connected and ready (default 0: do not wait).",
    )
    p.add_argument("--users", type=int, default=env.get("LOCUST_USERS"), help="Users in total (LOCUST_USERS).")
    p.add_argument(
        "--spawn-rate",
        type=float,
        default=env.get("LOCUST_SPAWN_RATE"),
        help="Users started per second, in total (LOCUST_SPAWN_RATE).",
    )
    p.add_argument(
        "--run-time",
        default=env.get("LOCUST_RUN_TIME"),
        help="How long the test runs: 90s, 5m, 1h30m (LOCUST_RUN_TIME); without it, until stopped.",
    )
    p.add_argument("--host", default=env.get("LOCUST_HOST"), help="The system under test (LOCUST_HOST).")
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="How long to wait for the workers, and then for the run's registration, seconds (default %(default)s).",
    )
    args = p.parse_args(argv)
    if args.users is None:
        p.error("--users is missing (and LOCUST_USERS is not set)")
    if args.spawn_rate is None:
        p.error("--spawn-rate is missing (and LOCUST_SPAWN_RATE is not set)")
    try:
        args.users = int(args.users)
        args.spawn_rate = float(args.spawn_rate)
    except ValueError as e:
        p.error(f"--users and --spawn-rate take numbers: {e}")
    if args.users < 1 or args.spawn_rate <= 0:
        p.error("--users must be at least 1 and --spawn-rate greater than 0")
    return args


class Master:
    """The master's web UI at ``base``."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def get(self, path: str) -> Any:
        """``GET path`` → its JSON; :class:`SwarmError` when it cannot be had."""
        return self._call(urllib.request.Request(self.base + path))

    def post_form(self, path: str, form: dict[str, str]) -> Any:
        """``POST path`` with a form body → its JSON."""
        body = urllib.parse.urlencode(form).encode()
        req = urllib.request.Request(
            self.base + path,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return self._call(req)

    def _call(self, req: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as r:
                return json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            if e.code == 404 and req.full_url.endswith("/consumer/run"):
                raise SwarmError(
                    f"the master at {self.base} does not record runs (no /consumer/run): its locustfile "
                    "must `import locust_consumer`, and --consumer-host must be set on the master"
                ) from e
            raise SwarmError(f"{req.get_method()} {req.full_url}: HTTP {e.code}") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise SwarmError(f"{req.get_method()} {req.full_url}: {e}") from e


def wait_for_workers(
    master: Master,
    workers: int,
    timeout: float,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Waits until the master has ``workers`` ready workers (a master that does not answer yet
    is waited for too); returns its last ``/stats/requests``."""
    deadline = clock() + timeout
    last_said = ""
    while True:
        try:
            report = master.get("/stats/requests")
        except SwarmError as e:
            report, why = None, str(e)
        else:
            ready = [w for w in report.get("workers", []) if w.get("state") == "ready"]
            if report.get("state") in BUSY_STATES or len(ready) >= workers:
                return report
            why = f"{len(ready)} of {workers} workers ready"
        if clock() > deadline:
            raise SwarmError(f"gave up after {timeout:.0f} s: {why}")
        if why != last_said:
            say(f"waiting: {why}")
            last_said = why
        sleep(POLL_S)


def swarm_form(args: argparse.Namespace) -> dict[str, str]:
    """The ``POST /swarm`` form of the options."""
    form = {"user_count": str(args.users), "spawn_rate": f"{args.spawn_rate:g}"}
    if args.run_time:
        form["run_time"] = str(args.run_time)
    if args.host:
        form["host"] = str(args.host)
    return form


def wait_for_run_id(
    master: Master,
    previous: Optional[str],
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Waits until the plugin has registered the test started after the one that started at
    ``previous`` (``startedAt`` of ``GET /consumer/run`` before the start); its run id."""
    deadline = clock() + timeout
    while True:
        status = master.get("/consumer/run")
        new = status.get("startedAt") not in (None, previous)
        if new and status.get("state") == "not recorded":
            raise SwarmError(f"the test runs, but the pipeline does not record it: {status.get('detail')}")
        if new and status.get("runId"):
            return str(status["runId"])
        if clock() > deadline:
            raise SwarmError(f"the test started, but no run was registered within {timeout:.0f} s ({status})")
        sleep(POLL_S)


def run(args: argparse.Namespace, say: Callable[[str], None]) -> str:
    """Steps 1 to 4 of the module's docs; the run id."""
    master = Master(args.web)
    report = wait_for_workers(master, args.workers, args.timeout, say)
    if report.get("state") in BUSY_STATES:
        raise SwarmError(
            f"a test is already going on the master at {args.web} (state {report.get('state')}); "
            "stop it (the web UI's Stop button, or GET /stop) or wait until it ends"
        )
    previous = master.get("/consumer/run").get("startedAt")
    workers = len([w for w in report.get("workers", []) if w.get("state") == "ready"])
    answer = master.post_form("/swarm", swarm_form(args))
    if not answer.get("success"):
        raise SwarmError(f"the master refused the test: {answer.get('message')}")
    say(
        f"started: {args.users} users at {args.spawn_rate:g}/s"
        + (f" for {args.run_time}" if args.run_time else " until stopped")
        + f" against {answer.get('host') or args.host} on {workers} workers"
    )
    return wait_for_run_id(master, previous, args.timeout)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)

    def say(msg: str) -> None:
        print(f"locust_consumer.swarm: {msg}", file=sys.stderr, flush=True)

    try:
        run_id = run(args, say)
    except SwarmError as e:
        say(f"error: {e}")
        return 1
    print(run_id, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
