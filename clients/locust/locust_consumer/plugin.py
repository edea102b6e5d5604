"""Locust event hooks: register a run at test start, send cumulative stats every interval from a
background greenlet, commit the final stats at test stop.

Only the process that owns the aggregated stats talks to the API: the local runner, or the
master (``--master``, or the parent of ``--processes``). Workers send their stats to the master
as usual and do nothing here.

Timeline on the master of a distributed run: ``test_stop`` fires before the workers' last
reports arrive, so the commit waits until every worker that took part has sent a report with no
users left, has gone missing, or has quit (:func:`pending_final_reports`), and at the latest
until Locust's ``quitting`` event, by which time Locust has received everything it ever will.
``quitting`` blocks until the commit is done, so the process does not exit before. Locust
stops a distributed test in two ways, and both end like that:

- headless (``--headless``, ``-t``): ``quit()`` fires ``test_stop``, then tells the workers to
  quit; each stops its users and sends a last report, and the master listens for 0.5 s more;
- a stop that keeps the master up (``--autostart`` and ``-t``, the web UI's stop button or
  ``run_time``): ``stop()`` tells the workers to stop, waits until they have no users, fires
  ``test_stop``; the workers' last reports come with their next periodic report (every 3 s).
  Workers that said they stopped have left Locust's list of workers by then, until they come
  back as ready, so that list alone cannot tell whose report is still to come.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

import gevent
import gevent.event
from gevent import Greenlet

from . import payloads
from .client import ApiClient, ApiError, Registration, Rejected, Unavailable

logger = logging.getLogger("locust_consumer")

#: How long registration is retried in the background when the API is unreachable at start.
REGISTER_BUDGET_S = 60.0
#: How long registration is retried before the test starts with ``--consumer-required``.
REQUIRED_REGISTER_BUDGET_S = 10.0
#: How long the commit is retried at the end of the test.
COMMIT_BUDGET_S = 30.0
#: How long the master waits after ``test_stop`` for its workers' final reports, on top of
#: ``--stop-timeout``.
FINAL_REPORTS_WAIT_S = 10.0
#: How long a stats post in flight at test stop may finish before it is abandoned.
IN_FLIGHT_GRACE_S = 2.0
#: Default of ``--consumer-interval``, seconds.
DEFAULT_INTERVAL_S = 5.0


def parse_interval(text: str) -> float:
    """``--consumer-interval``: seconds as ``5``, ``5s``, ``500ms`` or ``1m``; must be > 0."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*", str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration (5, 5s, 500ms, 1m)")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def add_arguments(parser: Any) -> None:
    """Adds the plugin's options to Locust's argument parser (``init_command_line_parser``)."""
    # On the parser itself: only Locust's add_argument takes include_in_web_ui.
    group = parser
    group.add_argument(
        "--consumer-host",
        type=str,
        default="",
        env_var="LOCUST_CONSUMER_HOST",
        include_in_web_ui=False,
        help="Base URL of the load-test API (http://127.0.0.1:8080). Without it the plugin does nothing.",
    )
    group.add_argument(
        "--consumer-api-key",
        type=str,
        default="",
        env_var="LOCUST_CONSUMER_API_KEY",
        include_in_web_ui=False,
        help="API key for register (sent as Authorization: Bearer). Prefer the environment variable.",
    )
    group.add_argument(
        "--consumer-interval",
        type=parse_interval,
        default=DEFAULT_INTERVAL_S,
        env_var="LOCUST_CONSUMER_INTERVAL",
        include_in_web_ui=False,
        help="How often cumulative stats are sent: 5, 5s, 500ms, 1m (default 5 s).",
    )
    group.add_argument(
        "--consumer-required",
        action="store_true",
        default=False,
        env_var="LOCUST_CONSUMER_REQUIRED",
        include_in_web_ui=False,
        help="Stop the test with an error when the run cannot be registered (default: warn and run on).",
    )


@dataclass(frozen=True)
class Settings:
    """The plugin's options, read once from Locust's parsed options."""

    host: str
    api_key: Optional[str]
    interval_s: float
    required: bool

    @classmethod
    def from_options(cls, options: Any) -> "Settings":
        """From ``environment.parsed_options`` (missing options take their defaults)."""
        interval = getattr(options, "consumer_interval", DEFAULT_INTERVAL_S) or DEFAULT_INTERVAL_S
        if isinstance(interval, str):
            interval = parse_interval(interval)
        return cls(
            host=(getattr(options, "consumer_host", "") or "").strip(),
            api_key=(getattr(options, "consumer_api_key", "") or "").strip() or None,
            interval_s=float(interval),
            required=bool(getattr(options, "consumer_required", False)),
        )


def pending_final_reports(
    last_users: dict[str, int],
    final: set[str],
    gone: set[str],
    workers: dict[str, str],
) -> set[str]:
    """The workers whose last report the master's commit still waits for.

    ``last_users``: worker id → user count of its latest report in this run (the workers that
    took part); ``final``: those that reported with no users after the stop; ``gone``: those seen
    missing (no heartbeat for 3 s: killed, or cut off); ``workers``: the master's current workers
    (``runner.clients``), id → state. A worker is waited for when it took part (it reported, or
    runs users now) and has not sent its final report, unless it is gone, or it left the
    master's list after a report with no users (it quit before the stop).
    """
    took_part = set(last_users) | {w for w, state in workers.items() if state in ("running", "spawning")}
    pending = set()
    for worker in took_part - final:
        if worker in gone or workers.get(worker) == "missing":
            continue
        if worker not in workers and last_users.get(worker, 0) == 0:
            continue
        pending.add(worker)
    return pending


def _runner_kind(runner: Any) -> str:
    """``local``, ``master`` or ``worker``."""
    from locust.runners import MasterRunner, WorkerRunner

    if isinstance(runner, WorkerRunner):
        return "worker"
    if isinstance(runner, MasterRunner):
        return "master"
    return "local"


class Run:
    """One load test (``test_start`` to ``test_stop``) as a run in the pipeline."""

    def __init__(self, plugin: "ConsumerPlugin", environment: Any) -> None:
        self.plugin = plugin
        self.environment = environment
        self.runner = environment.runner
        self.client = plugin.client
        self.settings = plugin.settings
        self.kind = _runner_kind(self.runner)
        self.mode = "cluster" if self.kind == "master" else "single"
        self.hostname = socket.gethostname()
        self.node_id = f"{self.hostname}-{os.getpid()}"
        self.started_at = datetime.now(timezone.utc)
        self.target_host = payloads.target_host_of(environment)
        self.registration: Optional[Registration] = None
        self.seq = 0
        self._warned_unreachable = False
        self._stats_failing = False
        self._posting = False
        self._stop = gevent.event.Event()
        self._final_now = gevent.event.Event()
        self._worker: Optional[Greenlet] = None
        self._finisher: Optional[Greenlet] = None
        self._stopped_at: Optional[float] = None
        #: Master: worker id → user count of its latest report in this run.
        self._last_users: dict[str, int] = {}
        #: Master: workers that reported with no users after the stop.
        self._final_reports: set[str] = set()
        #: Master: workers seen missing (warned once each).
        self._gone: set[str] = set()
        self.committed = False
        self.failed = False
        #: Why the run is not recorded (registration failed), once that is known.
        self.not_recorded: Optional[str] = None
        #: When the stats were read for the commit (``time.monotonic()``); they are final then.
        self.final_at: Optional[float] = None

    # --- start ---------------------------------------------------------------------------

    def register_body(self) -> dict[str, Any]:
        """The register body for this run."""
        options = self.environment.parsed_options
        users = getattr(self.runner, "target_user_count", None) or getattr(options, "num_users", None) or 0
        spawn_rate = getattr(options, "spawn_rate", None) or getattr(self.runner, "spawn_rate", None) or 0
        return payloads.register_body(
            started_at=self.started_at,
            hostname=self.hostname,
            node_id=self.node_id,
            users=int(users),
            spawn_rate=float(spawn_rate),
            target_host=self.target_host,
            mode=self.mode,
        )

    def start(self) -> bool:
        """Registers the run and starts the stats greenlet.

        With ``--consumer-required`` registration happens now, before any user starts, and a
        failure returns ``False``; otherwise it happens in the background and never fails the
        test (one warning when the API cannot be reached).
        """
        if self.settings.required:
            try:
                self.registration = self.client.register(self.register_body(), REQUIRED_REGISTER_BUDGET_S)
            except ApiError as e:
                self._required_failed(str(e))
                return False
            except gevent.GreenletExit:
                # Locust stopped the test (--run-time) while registration was still retrying.
                self._required_failed("the test was stopped while registration was still being retried")
                raise
            self._log_registered()
        self._worker = gevent.spawn(self._run)
        return True

    def _required_failed(self, why: str) -> None:
        """``--consumer-required`` and no registration: one clear error, exit code 1."""
        self.failed = True
        self.not_recorded = why
        self.environment.process_exit_code = 1
        logger.error(
            "cannot register the run with the load-test API at %s: %s. --consumer-required is set, "
            "so the test is stopped (exit code 1).",
            self.settings.host,
            why,
        )

    def _log_registered(self) -> None:
        assert self.registration is not None
        logger.info(
            "registered run %s with %s (node %s, mode %s)",
            self.registration.uuid,
            self.settings.host,
            self.node_id,
            self.mode,
        )

    def _warn_unreachable(self, error: str) -> None:
        """The one warning for an API that cannot be reached at start."""
        if self._warned_unreachable:
            return
        self._warned_unreachable = True
        logger.warning(
            "the load-test API at %s cannot be reached (%s); the test runs on, and the run is "
            "recorded only if the API answers within %d s (use --consumer-required to stop instead)",
            self.settings.host,
            error,
            int(REGISTER_BUDGET_S),
        )

    def _run(self) -> None:
        """Background greenlet: register (fail-open), then send stats every interval."""
        if self.registration is None:
            try:
                self.registration = self.client.register(
                    self.register_body(),
                    REGISTER_BUDGET_S,
                    on_retry=lambda _what, last, _n: self._warn_unreachable(last),
                )
            except Rejected as e:
                self.not_recorded = str(e)
                logger.error("%s; this run is not recorded", e)
                return
            except Unavailable as e:
                self.not_recorded = str(e)
                self._warn_unreachable(e.last)
                logger.info("giving up registering: %s; this run is not recorded", e)
                return
            except ApiError as e:
                self.not_recorded = str(e)
                logger.error("%s; this run is not recorded", e)
                return
            self._log_registered()
        while not self._stop.wait(self.settings.interval_s):
            self._send_stats()

    def _send_stats(self) -> None:
        """Sends one cumulative snapshot; a failure is reported once per outage, the next
        snapshot supersedes it anyway."""
        assert self.registration is not None
        if self.kind == "master":
            self._note_missing(self._workers())
        self.seq += 1
        body = payloads.stats_body(
            node_id=self.node_id,
            seq=self.seq,
            user_count=self.runner.user_count,
            state=self.runner.state,
            stats=self.runner.stats,
        )
        self._posting = True
        try:
            self.client.stats(self.registration, body, budget_s=self.settings.interval_s)
        except Rejected as e:
            if not self._stats_failing:
                logger.error("%s; later snapshots are still sent", e)
            self._stats_failing = True
        except ApiError as e:
            if not self._stats_failing:
                logger.warning("%s; retrying with the next snapshot", e)
            self._stats_failing = True
        else:
            if self._stats_failing:
                logger.info("stats are delivered again (seq %d)", self.seq)
            self._stats_failing = False
        finally:
            self._posting = False

    # --- stop ----------------------------------------------------------------------------

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        """Master: notes each worker's latest user count, and a report that arrives after the
        stop with no users left (its last: everything it counted is in the master's stats now)."""
        users = int(data.get("user_count") or 0)
        self._last_users[client_id] = users
        if self._stopped_at is not None and users == 0:
            self._final_reports.add(client_id)

    def _workers(self) -> dict[str, str]:
        """Master: the current workers, id → Locust's state (``ready``, ``running``, ``missing``…)."""
        clients = getattr(self.runner, "clients", None)
        if clients is None:
            return {}
        return {c.id: str(c.state) for c in clients.all}

    def _note_missing(self, workers: dict[str, str]) -> None:
        """Master: warns once per worker that Locust marked missing (see the README: what a
        killed worker costs)."""
        for worker, state in workers.items():
            if state != "missing" or worker in self._gone:
                continue
            self._gone.add(worker)
            logger.warning(
                "worker %s sent no heartbeat for 3 s and is missing: what it counted since its last "
                "report (it reports every 3 s) is lost to Locust and to run %s, and its users run no "
                "more until Locust drops the worker (after 60 s) and gives them to the others",
                worker,
                self.registration.uuid if self.registration else "(not registered)",
            )

    def stop(self) -> None:
        """``test_stop``: stops the stats greenlet and commits in the background, on the master
        once the workers' final reports are in."""
        if self._finisher is not None:
            return
        self._stopped_at = time.monotonic()
        self._stop.set()
        self._finisher = gevent.spawn(self._finish)

    def final_reports_in(self) -> bool:
        """Master: every worker that took part has sent its last report, quit, or gone missing."""
        workers = self._workers()
        self._note_missing(workers)
        return not pending_final_reports(self._last_users, self._final_reports, self._gone, workers)

    def _finish(self) -> None:
        if self.kind == "master":
            timeout = float(getattr(self.environment, "stop_timeout", 0) or 0) + FINAL_REPORTS_WAIT_S
            deadline = time.monotonic() + timeout
            while not self.final_reports_in() and not self._final_now.is_set():
                if time.monotonic() > deadline:
                    waiting = pending_final_reports(self._last_users, self._final_reports, self._gone, self._workers())
                    logger.warning(
                        "no final report from worker(s) %s within %.0f s of the stop; committing what arrived",
                        ", ".join(sorted(waiting)),
                        timeout,
                    )
                    break
                self._final_now.wait(0.1)
        self._commit()

    def _stop_worker(self) -> None:
        """Ends the background greenlet: lets a stats post in flight finish briefly, then kills it."""
        worker = self._worker
        if worker is None or worker.dead:
            return
        if self.registration is not None and self._posting:
            worker.join(IN_FLIGHT_GRACE_S)
        worker.kill(block=True, timeout=1)

    def _commit(self) -> None:
        self._stop_worker()
        if self.registration is None:
            if self._warned_unreachable:
                logger.info("the run was not recorded: the load-test API at %s was not reachable", self.settings.host)
            return
        self.seq += 1
        stats = self.runner.stats
        self.final_at = time.monotonic()
        body = payloads.commit_body(
            started_at=self.started_at,
            uuid=self.registration.uuid,
            hostname=self.hostname,
            node_id=self.node_id,
            seq=self.seq,
            user_count=self.runner.user_count,
            stats=stats,
            target_host=self.target_host,
            mode=self.mode,
        )
        requests_, failures = payloads.totals(stats)
        try:
            self.client.commit(self.registration, body, budget_s=COMMIT_BUDGET_S)
        except ApiError as e:
            self.failed = True
            logger.error("%s; the run's final record is missing", e)
            return
        self.committed = True
        logger.info(
            "committed run %s: %d requests, %d failures",
            self.registration.uuid,
            requests_,
            failures,
        )

    def status(self) -> dict[str, Any]:
        """What ``GET /consumer/run`` answers for this run: ``startedAt`` (when the test
        started, RFC 3339: tells runs apart), ``runId`` (``None`` until registered) and
        ``state``: ``registering``, ``running``, ``committing`` (stopped, the commit under way),
        ``committed``, ``not recorded`` (with ``detail``) or ``commit failed``."""
        uuid = self.registration.uuid if self.registration else None
        started_at = self.started_at.isoformat()
        if self.committed:
            state = "committed"
        elif self.not_recorded is not None:
            return {"startedAt": started_at, "runId": None, "state": "not recorded", "detail": self.not_recorded}
        elif self.failed:
            state = "commit failed"
        elif uuid is None:
            state = "registering"
        elif self._stopped_at is not None:
            state = "committing"
        else:
            state = "running"
        return {"startedAt": started_at, "runId": uuid, "state": state}

    def finish_now(self, timeout: float) -> None:
        """``quitting``: Locust has received everything it will; commit now and wait for it."""
        if self._finisher is None:
            self.stop()
        self._final_now.set()
        assert self._finisher is not None
        self._finisher.join(timeout)


class ConsumerPlugin:
    """The plugin in one Locust process: its settings, API client and current run."""

    def __init__(self, environment: Any, settings: Settings) -> None:
        self.environment = environment
        self.settings = settings
        self.client = ApiClient(settings.host, settings.api_key)
        self.run: Optional[Run] = None

    @property
    def active(self) -> bool:
        """Whether this process records runs (a consumer host is set and it is not a worker)."""
        return bool(self.settings.host) and _runner_kind(self.environment.runner) != "worker"

    def on_test_start(self, environment: Any) -> None:
        """Registers a new run (local runner or master)."""
        if not self.active:
            return
        if self.run is not None and self.run._finisher is None:
            self.run.stop()
        run = Run(self, environment)
        self.run = run
        if not run.start():
            gevent.spawn(environment.runner.quit)
            # Ends the greenlet running the runner's start() quietly, before it spawns any user
            # (GreenletExit is not an Exception, so Locust's event hook lets it through).
            raise gevent.GreenletExit()

    def status(self) -> dict[str, Any]:
        """``GET /consumer/run`` on the master's web UI: the current (or last) run's id and state
        (:meth:`Run.status`); ``state`` is ``none`` before the first test."""
        if self.run is None:
            return {"startedAt": None, "runId": None, "state": "none"}
        return self.run.status()

    def add_web_route(self, web_ui: Any) -> None:
        """Adds ``GET /consumer/run`` to Locust's web UI (behind its login when there is one), so
        a script that starts a test through ``POST /swarm`` learns the run id
        (``python -m locust_consumer.swarm``)."""
        from flask import jsonify

        def consumer_run() -> Any:
            return jsonify(self.status())

        guard = getattr(web_ui, "auth_required_if_enabled", None)
        view = guard(consumer_run) if guard else consumer_run
        web_ui.app.add_url_rule("/consumer/run", "consumer_run", view, methods=["GET"])

    def on_test_stop(self, environment: Any) -> None:
        """Commits the current run (in the background)."""
        if self.run is not None:
            self.run.stop()

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        """Master: a worker's report (see :meth:`Run.on_worker_report`)."""
        if self.run is not None:
            self.run.on_worker_report(client_id, data)

    def on_quitting(self, environment: Any) -> None:
        """Commits what is not committed yet and waits for it, before Locust exits."""
        run = self.run
        if run is None:
            return
        run.finish_now(COMMIT_BUDGET_S + FINAL_REPORTS_WAIT_S)
        if self.settings.required and run.failed and environment.process_exit_code in (None, 0):
            environment.process_exit_code = 1
        self._let_csv_catch_up(run)

    def _let_csv_catch_up(self, run: Run) -> None:
        """With ``--csv``, waits until Locust's CSV writer (a greenlet rewriting the files every
        ``CSV_STATS_INTERVAL_SEC``) has run once after the stats became final, so the CSV files
        hold the same final counts as the committed run (Locust 2.x otherwise exits with the
        CSV up to one interval behind its printed summary)."""
        options = getattr(self.environment, "parsed_options", None)
        if run.final_at is None or not getattr(options, "csv_prefix", None):
            return
        try:
            from locust.stats import CSV_STATS_INTERVAL_SEC as interval
        except ImportError:
            interval = 1
        remaining = run.final_at + float(interval) + 0.3 - time.monotonic()
        if remaining > 0:
            gevent.sleep(remaining)
