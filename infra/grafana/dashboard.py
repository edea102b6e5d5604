#!/usr/bin/env python3
"""Generates the Grafana dashboard `dashboards/loadtest.json` for the load-test results.

Plain Python (standard library only), so the generator runs anywhere CI runs:

    python3 infra/grafana/dashboard.py            # writes dashboards/loadtest.json
    python3 infra/grafana/dashboard.py --check    # fails when the committed file differs

Every query is raw InfluxQL against the measurements the writer stores (README, "Data in
InfluxDB"), so InfluxDB 1.x, 2.x (v1 API) and 3.x answer them. The end-to-end test
`tests/e2e/tests/dashboard.rs` takes each query out of the generated JSON, substitutes the
variables as Grafana does and runs it against two recorded runs; keep the two in step.

Grafana's InfluxQL data source conventions this file relies on (Grafana 11):
- a variable query yields one value per row, from its first column after `time`; the
  variable's regex may split it with the named groups `text` (shown) and `value` (used), so
  the run selector shows `start · target · status` (newest first) and keeps the run id as the
  value; two read-only variables beside it show the selected run's target and status;
- single-value variables are regex-escaped (`escapeRegex`) when not numeric, so run ids are
  matched with `=~ /^$run$/`;
- `$timeFilter` (not `$__timeFilter`, which is a SQL-data-source macro) and `$__interval`
  are replaced by Grafana;
- panel tables use `resultFormat: table`, which turns `GROUP BY` tags into columns.
"""

from __future__ import annotations

import argparse
import difflib
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
OUTPUT = HERE / "dashboards" / "loadtest.json"

DATASOURCE = {"type": "influxdb", "uid": "loadtest-influxdb"}
DASHBOARD_UID = "loadtest-run"
# Grafana 11.0's dashboard schema; later 11.x releases migrate it on load.
SCHEMA_VERSION = 39

RUN = '"event_id" =~ /^$run$/'
BASELINE = '"event_id" =~ /^$baseline$/'


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def target(ref_id: str, query: str, *, fmt: str = "time_series", alias: str = "$col") -> dict:
    """A raw InfluxQL query of a panel."""
    t = {
        "datasource": DATASOURCE,
        "refId": ref_id,
        "rawQuery": True,
        "query": query,
        "resultFormat": fmt,
    }
    if fmt == "time_series":
        t["alias"] = alias
    return t


def query_variable(name: str, label: str, query: str, *, hide: int = 0, regex: str = "") -> dict:
    """A query variable refreshed when the dashboard loads (runs do not depend on the time range)."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 1,
        "sort": 0,
        "multi": False,
        "includeAll": False,
        "hide": hide,
        "regex": regex,
        "options": [],
        "current": {},
    }


def timeseries(panel_id: int, title: str, grid: tuple, targets: list, *, unit: str,
               description: str, transformations: list | None = None) -> dict:
    panel = {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": dict(zip(("x", "y", "w", "h"), grid)),
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"drawStyle": "line", "lineWidth": 2, "fillOpacity": 0,
                           "showPoints": "auto", "spanNulls": True},
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    }
    if transformations:
        panel["transformations"] = transformations
    return panel


def table(panel_id: int, title: str, grid: tuple, targets: list, *, description: str,
          transformations: list | None = None, overrides: list | None = None,
          links: list | None = None) -> dict:
    defaults: dict = {"custom": {"align": "auto", "filterable": True}}
    if links:
        defaults["links"] = links
    panel = {
        "id": panel_id,
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": dict(zip(("x", "y", "w", "h"), grid)),
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {"showHeader": True, "cellHeight": "sm"},
    }
    if transformations:
        panel["transformations"] = transformations
    return panel


def row(panel_id: int, title: str, y: int) -> dict:
    return {"id": panel_id, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def override(field: str, **props) -> dict:
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }


def organize(exclude: list | None = None, order: list | None = None,
             rename: dict | None = None, ref_id: str | None = None) -> dict:
    t = {
        "id": "organize",
        "options": {
            "excludeByName": {name: True for name in exclude or []},
            "indexByName": {name: i for i, name in enumerate(order or [])},
            "renameByName": rename or {},
        },
    }
    if ref_id:
        t["filter"] = {"id": "byRefId", "options": ref_id}
    return t


def shift_to_run_start(ref_id: str) -> list:
    """Moves the baseline's points (query `ref_id`) onto the selected run's time axis.

    InfluxQL cannot shift timestamps and a panel's time shift moves the whole panel, so the
    baseline query returns the baseline run's own points and two transformations add
    `$baseline_shift_ms` (selected run's start minus the baseline's) to their time field and
    drop the original one.
    """
    return [
        {
            "id": "calculateField",
            "filter": {"id": "byRefId", "options": ref_id},
            "options": {
                "mode": "binary",
                "binary": {
                    "left": {"matcher": {"id": "byType", "options": "time"}},
                    "operator": "+",
                    "right": {"fixed": "$baseline_shift_ms"},
                },
                "timeSeries": False,
                "replaceFields": False,
            },
        },
        organize(exclude=["Time"], ref_id=ref_id),
    ]


# ---------------------------------------------------------------------------------------------
# Queries (the test runs every one of them)
# ---------------------------------------------------------------------------------------------

RUNS_QUERY = 'SELECT "label" FROM "loadtest_event" ORDER BY time DESC LIMIT 200'
# The writer's `label` field is `<start> · <target> · <status> · <run id>`: the option shows
# the text before the run id and keeps the run id as the value (Grafana's named capture groups
# `text` and `value` in a variable's regex, for any data source).
RUN_LABEL_REGEX = "/^(?<text>.*) · (?<value>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/"
# The same list without the newest run, so that the dashboard opens comparing the newest run
# with the one before it (a variable's default is its first option).
BASELINES_QUERY = RUNS_QUERY + " OFFSET 1"

# Selected run's start minus the baseline's, in ms (negative when the baseline is newer).
# `elapsed()` gives the distance between the two event points in time order and
# `difference()` of a marker (0 for the baseline, 1 for the run) its sign.
SHIFT_QUERY = (
    'SELECT elapsed("marker", 1ms) * difference("marker") AS "shift_ms" FROM '
    '(SELECT "clients" * 0 AS "marker" FROM "loadtest_event" WHERE ' + BASELINE + "), "
    '(SELECT "clients" * 0 + 1 AS "marker" FROM "loadtest_event" WHERE ' + RUN + ")"
)


def variables() -> list:
    return [
        query_variable("run", "Run", RUNS_QUERY, regex=RUN_LABEL_REGEX),
        query_variable(
            "run_target", "Target",
            'SHOW TAG VALUES FROM "loadtest_event" WITH KEY = "target_host" WHERE ' + RUN,
        ),
        query_variable(
            "run_status", "Status",
            'SELECT "status" FROM "loadtest_event" WHERE ' + RUN,
        ),
        query_variable("baseline", "Compare with", BASELINES_QUERY, regex=RUN_LABEL_REGEX),
        query_variable("baseline_shift_ms", "Baseline shift (ms)", SHIFT_QUERY, hide=2),
    ]


def annotations() -> list:
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }

    def influx_annotation(name: str, color: str, query: str, text: str, tags: str) -> dict:
        return {
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": color,
            "name": name,
            "target": {
                "refId": name,
                "query": query,
                "rawQuery": True,
                "queryType": "tags",
                "fromAnnotations": True,
                "textColumn": text,
                "tagsColumn": tags,
                "titleColumn": "",
                "timeEndColumn": "",
            },
        }

    return [
        builtin,
        # The event point sits at the run's start.
        influx_annotation(
            "Run start", "green",
            'SELECT "target_host", "status", "event_id" FROM "loadtest_event" WHERE $timeFilter',
            "target_host", "status,event_id",
        ),
        # The final record (one Aggregated summary per committed run) sits at the run's end.
        influx_annotation(
            "Run end", "blue",
            'SELECT "requests", "event_id" FROM "loadtest_summary" '
            "WHERE \"name\" = 'Aggregated' AND $timeFilter",
            "requests", "event_id",
        ),
    ]


def panels() -> list:
    ps: list = []
    y = 0

    # -- Runs ---------------------------------------------------------------------------------
    ps.append(row(1, "Runs", y))
    y += 1
    ps.append(table(
        2, "All runs", (0, y, 24, 7),
        [target("A", 'SELECT "event_id", "target_host", "status", "tool", "clients" AS "users", '
                     '"duration_s", "duration_s" * 1000 AS "duration_ms" FROM "loadtest_event" '
                     "ORDER BY time DESC LIMIT 50", fmt="table")],
        description="Every recorded run, newest first. Click a row to open that run with the "
                    "time range following it.",
        transformations=[
            {
                "id": "calculateField",
                "options": {
                    "mode": "binary",
                    "binary": {
                        "left": {"matcher": {"id": "byName", "options": "Time"}},
                        "operator": "+",
                        "right": {"matcher": {"id": "byName", "options": "duration_ms"}},
                    },
                    "alias": "end_ms",
                    "replaceFields": False,
                },
            },
            organize(order=["Time", "target_host", "status", "tool", "users", "duration_s",
                            "event_id", "duration_ms", "end_ms"],
                     rename={"Time": "Start", "target_host": "Target", "status": "Status",
                             "tool": "Tool", "users": "Users", "duration_s": "Duration",
                             "event_id": "Run"}),
        ],
        overrides=[
            override("Duration", unit="s"),
            override("duration_ms", custom__hidden=True),
            override("end_ms", custom__hidden=True, unit="none", decimals=0),
        ],
        links=[{
            "title": "Open this run",
            "url": f"/d/{DASHBOARD_UID}?var-run=${{__data.fields.Run}}"
                   "&var-baseline=${baseline}&from=${__value.time}&to=${__data.fields.end_ms}",
        }],
    ))
    y += 7

    # -- The selected run over time -------------------------------------------------------------
    ps.append(row(3, "Selected run over time", y))
    y += 1
    snap = f'FROM "loadtest_snapshot" WHERE {RUN} AND $timeFilter'
    ps.append(timeseries(
        4, "Users", (0, y, 8, 8),
        [target("A", f'SELECT max("user_count") AS "users" {snap} '
                     "GROUP BY time($__interval) fill(none)")],
        unit="none", description="Users running (all nodes).",
    ))
    ps.append(timeseries(
        5, "Requests/s and failures/s", (8, y, 8, 8),
        [target("A", f'SELECT mean("rps") AS "requests/s", mean("fail_per_s") AS "failures/s" '
                     f"{snap} GROUP BY time($__interval) fill(none)")],
        unit="reqps", description="Per snapshot interval.",
    ))
    ps.append(timeseries(
        6, "Response time p50 / p95 / p99", (16, y, 8, 8),
        [target("A", 'SELECT max("response_time_p50") AS "p50", max("response_time_p95") AS "p95", '
                     f'max("response_time_p99") AS "p99" {snap} '
                     "GROUP BY time($__interval) fill(none)")],
        unit="ms", description="Percentiles of the requests in each snapshot interval.",
    ))
    y += 8
    req = f'FROM "loadtest_request" WHERE {RUN} AND $timeFilter'
    ps.append(timeseries(
        7, "Requests/s per endpoint", (0, y, 12, 8),
        [target("A", f'SELECT mean("rps") AS "rps" {req} '
                     'GROUP BY time($__interval), "method", "name" fill(none)',
                alias="$tag_method $tag_name")],
        unit="reqps", description="Per endpoint (method and name).",
    ))
    ps.append(timeseries(
        8, "p95 per endpoint", (12, y, 12, 8),
        [target("A", f'SELECT max("response_time_p95") AS "p95" {req} '
                     'GROUP BY time($__interval), "method", "name" fill(none)',
                alias="$tag_method $tag_name")],
        unit="ms", description="Per endpoint (method and name).",
    ))
    y += 8

    # -- Final record ----------------------------------------------------------------------------
    ps.append(row(9, "Final record", y))
    y += 1
    ps.append(table(
        10, "Endpoints", (0, y, 24, 9),
        [
            target("A", 'SELECT "requests", "failures", "failures" / "requests" * 100 AS "failure %", '
                        '"response_time_avg" AS "avg", "response_time_p50" AS "p50", '
                        '"response_time_p95" AS "p95", "response_time_p99" AS "p99", '
                        '"response_time_max" AS "max", "rps" '
                        f'FROM "loadtest_summary" WHERE {RUN} GROUP BY "method", "name"',
                   fmt="table"),
            target("B", 'SELECT "response_time_p95" AS "baseline p95" '
                        f'FROM "loadtest_summary" WHERE {BASELINE} GROUP BY "method", "name"',
                   fmt="table"),
        ],
        description="The run's final summary per endpoint (`Aggregated` is the whole run), with "
                    "the p95 difference to the run selected in \"Compare with\".",
        transformations=[
            organize(exclude=["Time"]),
            {"id": "merge", "options": {}},
            {
                "id": "calculateField",
                "options": {
                    "mode": "binary",
                    "binary": {
                        "left": {"matcher": {"id": "byName", "options": "p95"}},
                        "operator": "-",
                        "right": {"matcher": {"id": "byName", "options": "baseline p95"}},
                    },
                    "alias": "p95 vs baseline",
                    "replaceFields": False,
                },
            },
            organize(order=["method", "name", "requests", "failures", "failure %", "avg", "p50",
                            "p95", "p99", "max", "rps", "baseline p95", "p95 vs baseline"],
                     rename={"rps": "requests/s"}),
        ],
        overrides=[
            override("failure %", unit="percent", decimals=2),
            *[override(f, unit="ms", decimals=1)
              for f in ("avg", "p50", "p95", "p99", "max", "baseline p95", "p95 vs baseline")],
            override("requests/s", unit="reqps", decimals=2),
        ],
    ))
    y += 9
    ps.append(table(
        11, "Errors", (0, y, 14, 7),
        [target("A", 'SELECT "occurrences", "error" FROM "loadtest_error" '
                     f'WHERE {RUN} GROUP BY "method", "name"', fmt="table")],
        description="Distinct errors of the run and how often each occurred.",
        transformations=[organize(exclude=["Time"],
                                  order=["method", "name", "error", "occurrences"])],
    ))
    ps.append(table(
        12, "Thresholds", (14, y, 10, 7),
        [target("A", 'SELECT "passed", "actual", "limit" FROM "loadtest_threshold" '
                     f'WHERE {RUN} GROUP BY "threshold", "node_id"', fmt="table")],
        description="Threshold verdicts (`loadgen --threshold`) per node.",
        transformations=[organize(exclude=["Time"],
                                  order=["threshold", "node_id", "passed", "actual", "limit"])],
        overrides=[override(
            "passed",
            mappings=[{"type": "value", "options": {
                "1": {"text": "PASS", "color": "green", "index": 0},
                "0": {"text": "FAIL", "color": "red", "index": 1},
            }}],
            custom__cellOptions={"type": "color-background"},
        )],
    ))
    y += 7

    # -- Compare with a baseline -------------------------------------------------------------------
    ps.append(row(13, "Compare with baseline", y))
    y += 1
    base = f'FROM "loadtest_snapshot" WHERE {BASELINE}'
    ps.append(timeseries(
        14, "p95: run vs baseline", (0, y, 12, 8),
        [
            target("A", f'SELECT "response_time_p95" AS "p95" {snap}', alias="run $col"),
            target("B", f'SELECT "response_time_p95" AS "p95" {base}', alias="baseline $col"),
        ],
        unit="ms",
        description="The baseline run's p95, shifted so that both runs start together.",
        transformations=shift_to_run_start("B"),
    ))
    ps.append(timeseries(
        15, "Requests/s: run vs baseline", (12, y, 12, 8),
        [
            target("A", f'SELECT "rps" AS "requests/s" {snap}', alias="run $col"),
            target("B", f'SELECT "rps" AS "requests/s" {base}', alias="baseline $col"),
        ],
        unit="reqps",
        description="The baseline run's requests/s, shifted so that both runs start together.",
        transformations=shift_to_run_start("B"),
    ))
    return ps


def dashboard() -> dict:
    return {
        "uid": DASHBOARD_UID,
        "title": "Load test run",
        "description": "One recorded load test (loadgen or Locust): users, throughput, "
                       "response times, per-endpoint results, errors, thresholds, and a "
                       "comparison with a baseline run.",
        "tags": ["loadtest"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "timezone": "",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "refresh": "",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {"list": annotations()},
        "templating": {"list": variables()},
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed file instead of writing it")
    args = parser.parse_args()
    fresh = render()
    if args.check:
        committed = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if committed != fresh:
            sys.stdout.writelines(difflib.unified_diff(
                committed.splitlines(keepends=True), fresh.splitlines(keepends=True),
                str(OUTPUT), "generated"))
            print(f"{OUTPUT} is stale: run `python3 {pathlib.Path(__file__).name}` in "
                  f"{HERE} and commit the result", file=sys.stderr)
            return 1
        print(f"{OUTPUT.name} matches the generator")
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(fresh, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
