"""Unit tests of the master's wait for its workers' final reports, and of the spawn-message
workaround (no network, no Locust runner)."""

from __future__ import annotations

import time
import types
import unittest

from locust_consumer.plugin import pending_final_reports
from locust_consumer.workarounds import cache_default_args


class PendingFinalReportsTest(unittest.TestCase):
    def test_waits_for_workers_that_took_part_until_they_report_no_users(self) -> None:
        last = {"a": 4, "b": 4}
        workers = {"a": "running", "b": "running"}
        self.assertEqual(pending_final_reports(last, set(), set(), workers), {"a", "b"})
        self.assertEqual(pending_final_reports(last, {"a"}, set(), workers), {"b"})
        self.assertEqual(pending_final_reports(last, {"a", "b"}, set(), workers), set())

    def test_a_worker_that_said_it_stopped_is_still_waited_for(self) -> None:
        # The stop that keeps the master up: `client_stopped` removes the worker from Locust's
        # list before its last periodic report comes.
        self.assertEqual(pending_final_reports({"a": 4, "b": 4}, {"a"}, set(), {"a": "ready"}), {"b"})

    def test_a_missing_worker_is_not_waited_for(self) -> None:
        workers = {"a": "running", "b": "missing"}
        self.assertEqual(pending_final_reports({"a": 4, "b": 4}, {"a"}, set(), workers), set())
        # ... nor once Locust has dropped it (60 s after it went missing).
        self.assertEqual(pending_final_reports({"a": 4, "b": 4}, {"a"}, {"b"}, {"a": "ready"}), set())

    def test_a_worker_that_quit_before_the_stop_is_not_waited_for(self) -> None:
        self.assertEqual(pending_final_reports({"a": 4, "b": 0}, {"a"}, set(), {"a": "ready"}), set())

    def test_a_worker_that_ran_users_before_its_first_report_is_waited_for(self) -> None:
        workers = {"a": "running", "late": "ready"}
        self.assertEqual(pending_final_reports({}, set(), set(), workers), {"a"})


class CacheDefaultArgsTest(unittest.TestCase):
    def test_builds_once_and_hands_out_copies(self) -> None:
        calls = []

        def default_args_dict() -> dict:
            calls.append(1)
            return {"users": 1, "host": ""}

        module = types.SimpleNamespace(default_args_dict=default_args_dict)
        self.assertTrue(cache_default_args(module))
        first = module.default_args_dict()
        first["users"] = 99
        self.assertEqual(module.default_args_dict(), {"users": 1, "host": ""})
        self.assertEqual(len(calls), 1)
        self.assertFalse(cache_default_args(module), "a second import does not wrap twice")

    def test_locusts_own_function_is_cached_and_unchanged(self) -> None:
        import locust_consumer  # noqa: F401  (applies it)
        from locust import argument_parser

        parser = argument_parser.get_empty_argument_parser()
        argument_parser.setup_parser_arguments(parser)
        parser._default_config_files = {}
        self.assertEqual(argument_parser.default_args_dict(), vars(parser.parse([])))
        started = time.process_time()
        for _ in range(100):
            argument_parser.default_args_dict()
        # Uncached, 100 calls take about 0.6 s of CPU (a parser each).
        self.assertLess(time.process_time() - started, 0.05)


if __name__ == "__main__":
    unittest.main()
