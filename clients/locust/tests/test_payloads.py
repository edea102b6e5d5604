"""Unit tests of the request bodies, built from real Locust stats objects."""

from __future__ import annotations

import json
import unittest
from datetime import datetime, timezone

from locust.stats import RequestStats

from locust_consumer import payloads
from locust_consumer.plugin import Settings, parse_interval


def sample_stats() -> RequestStats:
    stats = RequestStats()
    for t in (12, 15.2, 243.7):
        stats.log_request("GET", "/", t, 100)
    stats.log_request("GET", "/fail", 5, 4)
    stats.log_error("GET", "/fail", Exception("HTTPError('500 Server Error')"))
    stats.log_request("GET", "/fail", 6, 4)
    stats.log_error("GET", "/fail", Exception("HTTPError('500 Server Error')"))
    return stats


class PayloadsTest(unittest.TestCase):
    def test_stats_body_is_locusts_serialized_entries(self) -> None:
        body = payloads.stats_body(node_id="n", seq=3, user_count=5, state="running", stats=sample_stats())
        self.assertEqual(body["seq"], 3)
        self.assertEqual([(e["method"], e["name"]) for e in body["entries"]], [("GET", "/"), ("GET", "/fail")])
        root = body["entries"][0]
        self.assertEqual(root["num_requests"], 3)
        # Locust keeps 243.7 ms under the float key 240.0; the API wants whole milliseconds.
        self.assertEqual(root["response_times"], {12: 1, 15: 1, 240: 1})
        self.assertTrue(all(type(k) is int for k in root["response_times"]))
        self.assertNotIn("num_reqs_per_sec", root)
        self.assertNotIn("num_fail_per_sec", root)
        # Locust's total row has method None; the API wants a string.
        self.assertEqual(body["total"]["name"], "Aggregated")
        self.assertEqual(body["total"]["method"], "")
        self.assertEqual((body["total"]["num_requests"], body["total"]["num_failures"]), (5, 2))
        # JSON turns the histogram keys into strings, as the API expects.
        self.assertIn('"240": 1', json.dumps(root))

    def test_errors_are_strings_and_distinct(self) -> None:
        stats = sample_stats()
        stats.log_error("GET", "/fail", Exception("timeout"))
        errors = payloads.serialize_errors(stats.errors.values())
        self.assertEqual(len(errors), 2)
        by_error = {e["error"]: e for e in errors}
        self.assertEqual(sum(e["occurrences"] for e in errors), 3)
        for e in errors:
            self.assertIsInstance(e["error"], str)
            self.assertEqual((e["method"], e["name"]), ("GET", "/fail"))
        self.assertEqual(by_error[next(k for k in by_error if "500" in k)]["occurrences"], 2)

    def test_commit_and_register_bodies(self) -> None:
        t = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)
        reg = payloads.register_body(
            started_at=t, hostname="h", node_id="h-1", users=5, spawn_rate=10, target_host="http://t", mode="cluster"
        )
        self.assertEqual(reg["startedAt"], "2026-11-29T08:00:00+00:00")
        self.assertEqual(reg["measurement"]["fields"], {"clients": 5, "hatchRate": 10.0, "requests": 0})
        self.assertEqual(reg["measurement"]["tags"], {"targetHost": "http://t", "mode": "cluster"})
        self.assertEqual(reg["tool"], "locust")
        commit = payloads.commit_body(
            started_at=t,
            uuid="u",
            hostname="h",
            node_id="h-1",
            seq=9,
            user_count=0,
            stats=sample_stats(),
            target_host="http://t",
            mode="single",
        )
        self.assertEqual(len(commit["measurement"]["fields"]["requestStats"]), 2)
        self.assertEqual(commit["measurement"]["tags"], {"hostname": "http://t", "mode": "single"})
        self.assertEqual(commit["seq"], 9)
        self.assertEqual(len(commit["errors"]), 1)


class OptionsTest(unittest.TestCase):
    def test_parse_interval(self) -> None:
        self.assertEqual(parse_interval("5"), 5.0)
        self.assertEqual(parse_interval("2s"), 2.0)
        self.assertEqual(parse_interval("500ms"), 0.5)
        self.assertEqual(parse_interval("1m"), 60.0)
        for bad in ("0", "soon", "-1s"):
            with self.assertRaises(ValueError):
                parse_interval(bad)

    def test_settings_defaults(self) -> None:
        class Options:
            consumer_host = " http://api "
            consumer_api_key = ""

        s = Settings.from_options(Options())
        self.assertEqual((s.host, s.api_key, s.interval_s, s.required), ("http://api", None, 5.0, False))


if __name__ == "__main__":
    unittest.main()
