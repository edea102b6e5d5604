"""Unit tests of ``python -m locust_consumer.swarm`` against a scripted master (no network)."""

from __future__ import annotations

import unittest
from typing import Any

from locust_consumer import swarm


class FakeMaster(swarm.Master):
    """Answers each GET path with the next scripted answer for it; records the POSTs."""

    def __init__(self, gets: dict[str, list[Any]]) -> None:
        super().__init__("http://master:8089")
        self.gets = {k: list(v) for k, v in gets.items()}
        self.posts: list[tuple[str, dict[str, str]]] = []

    def get(self, path: str) -> Any:
        answers = self.gets[path]
        item = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(item, Exception):
            raise item
        return item

    def post_form(self, path: str, form: dict[str, str]) -> Any:
        self.posts.append((path, form))
        return {"success": True, "host": form.get("host")}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def report(state: str, *workers: str) -> dict[str, Any]:
    return {"state": state, "workers": [{"id": f"w{i}", "state": s} for i, s in enumerate(workers)]}


class OptionsTest(unittest.TestCase):
    def test_defaults_are_the_masters_locust_settings(self) -> None:
        env = {"LOCUST_USERS": "50", "LOCUST_SPAWN_RATE": "10", "LOCUST_RUN_TIME": "5m", "LOCUST_HOST": "http://t"}
        args = swarm.parse_args(["--workers", "5"], env)
        self.assertEqual((args.users, args.spawn_rate, args.run_time, args.host, args.workers), (50, 10.0, "5m", "http://t", 5))
        self.assertEqual(
            swarm.swarm_form(args),
            {"user_count": "50", "spawn_rate": "10", "run_time": "5m", "host": "http://t"},
        )

    def test_users_are_required(self) -> None:
        with self.assertRaises(SystemExit) as e:
            swarm.parse_args([], {})
        self.assertEqual(e.exception.code, 2)


class WaitTest(unittest.TestCase):
    def test_waits_for_the_workers_and_a_master_that_does_not_answer_yet(self) -> None:
        master = FakeMaster(
            {
                "/stats/requests": [
                    swarm.SwarmError("connection refused"),
                    report("ready", "ready", "missing"),
                    report("ready", "ready", "ready"),
                ]
            }
        )
        clock, said = Clock(), []
        got = swarm.wait_for_workers(master, 2, 60, said.append, clock, clock.sleep)
        self.assertEqual(len(got["workers"]), 2)
        self.assertEqual(said, ["waiting: connection refused", "waiting: 1 of 2 workers ready"])

    def test_gives_up_with_the_count(self) -> None:
        master = FakeMaster({"/stats/requests": [report("ready", "ready")]})
        clock = Clock()
        with self.assertRaisesRegex(swarm.SwarmError, "1 of 3 workers ready"):
            swarm.wait_for_workers(master, 3, 10, lambda _m: None, clock, clock.sleep)

    def test_the_run_id_is_the_new_tests(self) -> None:
        old = {"startedAt": "t1", "runId": "old", "state": "committed"}
        master = FakeMaster(
            {
                "/consumer/run": [
                    old,
                    {"startedAt": "t2", "runId": None, "state": "registering"},
                    {"startedAt": "t2", "runId": "new", "state": "running"},
                ]
            }
        )
        clock = Clock()
        self.assertEqual(swarm.wait_for_run_id(master, "t1", 60, clock, clock.sleep), "new")

    def test_a_new_test_that_is_not_recorded_is_an_error(self) -> None:
        master = FakeMaster({"/consumer/run": [{"startedAt": "t2", "runId": None, "state": "not recorded", "detail": "HTTP 401"}]})
        clock = Clock()
        with self.assertRaisesRegex(swarm.SwarmError, "HTTP 401"):
            swarm.wait_for_run_id(master, "t1", 60, clock, clock.sleep)


class RunTest(unittest.TestCase):
    def test_refuses_while_a_test_is_going(self) -> None:
        master = FakeMaster({"/stats/requests": [report("running", "running")]})
        args = swarm.parse_args(["--users", "5", "--spawn-rate", "1"], {})
        original = swarm.Master
        swarm.Master = lambda _base: master  # type: ignore[assignment,misc]
        try:
            with self.assertRaisesRegex(swarm.SwarmError, "already going"):
                swarm.run(args, lambda _m: None)
        finally:
            swarm.Master = original  # type: ignore[misc]
        self.assertEqual(master.posts, [])


if __name__ == "__main__":
    unittest.main()
