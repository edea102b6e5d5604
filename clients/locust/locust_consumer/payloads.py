"""The API's request bodies, built from Locust's own stats (pure functions, no I/O).

Stats are cumulative: every body carries everything since the test started, so a later body
supersedes an earlier one and a lost one costs nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Optional

#: Keys of ``StatsEntry.serialize()`` that the API ignores and that grow with the run's length
#: (one key per second), so they are not sent.
DROPPED_ENTRY_KEYS = ("num_reqs_per_sec", "num_fail_per_sec")
#: The ``tool`` the API records for runs from this plugin.
TOOL = "locust"


def rfc3339(t: datetime) -> str:
    """``t`` as an RFC 3339 timestamp in UTC (``2026-11-29T08:00:00.123456+00:00``)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat()


def serialize_entry(entry: Any) -> dict[str, Any]:
    """One ``StatsEntry`` as the API takes it: ``StatsEntry.serialize()`` without the per-second
    counters, ``method`` as a string (Locust's total row has ``None``) and the histogram's keys as
    whole milliseconds."""
    data = dict(entry.serialize())
    for key in DROPPED_ENTRY_KEYS:
        data.pop(key, None)
    if data.get("method") is None:
        data["method"] = ""
    # Locust rounds times of 100 ms and more with round(t, -1) and friends, which gives float
    # keys for float times (130.0); the histogram's keys are whole milliseconds.
    histogram: dict[int, int] = {}
    for key, count in (data.get("response_times") or {}).items():
        ms = int(round(float(key)))
        histogram[ms] = histogram.get(ms, 0) + int(count)
    data["response_times"] = histogram
    return data


def serialize_entries(stats: Any) -> list[dict[str, Any]]:
    """Every per-endpoint entry of a ``RequestStats``, in a stable order."""
    entries = sorted(stats.entries.values(), key=lambda e: (str(e.method or ""), str(e.name)))
    return [serialize_entry(e) for e in entries]


def serialize_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """Locust's ``StatsError`` values as ``{method, name, error, occurrences}``.

    ``error`` is a string (``StatsError.parse_error``: memory addresses become ``0x....``); two
    errors that read the same after that are one row with their occurrences added.
    """
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for e in errors:
        error = _parse_error(e.error)
        key = (str(e.method or ""), str(e.name), error)
        row = merged.get(key)
        if row is None:
            merged[key] = {"method": key[0], "name": key[1], "error": error, "occurrences": int(e.occurrences)}
        else:
            row["occurrences"] += int(e.occurrences)
    return [merged[k] for k in sorted(merged)]


def _parse_error(error: Any) -> str:
    """Locust's error text for an exception or string (its ``StatsError.parse_error``)."""
    try:
        from locust.stats import StatsError

        return str(StatsError.parse_error(error))
    except Exception:  # an older or newer Locust without it: its plain text will do
        return error if isinstance(error, str) else repr(error)


def register_body(
    *,
    started_at: datetime,
    hostname: str,
    node_id: str,
    users: int,
    spawn_rate: float,
    target_host: str,
    mode: str,
) -> dict[str, Any]:
    """Body of ``POST /apiv0.1/events/register`` (the original Consumer's, plus ``tool``, ``nodeId``)."""
    return {
        "startedAt": rfc3339(started_at),
        "host": hostname,
        "measurement": {
            "fields": {"clients": int(users), "hatchRate": float(spawn_rate), "requests": 0},
            "tags": {"targetHost": target_host, "mode": mode},
        },
        "tool": TOOL,
        "nodeId": node_id,
    }


def stats_body(*, node_id: str, seq: int, user_count: int, state: str, stats: Any) -> dict[str, Any]:
    """Body of ``POST /apiv0.1/events/{uuid}/stats``: the node's cumulative stats now."""
    return {
        "nodeId": node_id,
        "seq": int(seq),
        "userCount": int(user_count),
        "state": str(state),
        "entries": serialize_entries(stats),
        "total": serialize_entry(stats.total),
        "errors": serialize_errors(stats.errors.values()),
    }


def commit_body(
    *,
    started_at: datetime,
    uuid: str,
    hostname: str,
    node_id: str,
    seq: int,
    user_count: int,
    stats: Any,
    target_host: str,
    mode: str,
) -> dict[str, Any]:
    """Body of ``POST /apiv0.1/events/commit``: the final cumulative stats."""
    return {
        "startedAt": rfc3339(started_at),
        "uuid": uuid,
        "host": hostname,
        "nodeId": node_id,
        "seq": int(seq),
        "userCount": int(user_count),
        "errors": serialize_errors(stats.errors.values()),
        "measurement": {
            "fields": {"requestStats": serialize_entries(stats)},
            "tags": {"hostname": target_host, "mode": mode},
        },
    }


def totals(stats: Any) -> tuple[int, int]:
    """``(requests, failures)`` of the aggregated row."""
    return int(stats.total.num_requests), int(stats.total.num_failures)


def target_host_of(environment: Any) -> str:
    """The system under test: ``--host``, else the one ``host`` its user classes agree on."""
    host: Optional[str] = getattr(environment, "host", None)
    if host:
        return str(host).rstrip("/")
    hosts = {getattr(u, "host", None) for u in getattr(environment, "user_classes", []) or []}
    hosts.discard(None)
    hosts.discard("")
    return str(next(iter(hosts))).rstrip("/") if len(hosts) == 1 else ""
