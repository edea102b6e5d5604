"""Unit tests of the API client: retries, backoff, Retry-After, problem+json (no network)."""

from __future__ import annotations

import unittest
from typing import Any, Optional

import requests

from locust_consumer.client import (
    ApiClient,
    Registration,
    Rejected,
    Unavailable,
    backoff_delays,
    retry_after_s,
)


def response(status: int, body: Any = None, headers: Optional[dict[str, str]] = None) -> requests.Response:
    """A ``requests.Response`` with a JSON body."""
    import json

    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode() if body is not None else b""
    r.headers.update(headers or {})
    return r


class FakeSession:
    """Answers each POST with the next scripted response or exception; records the calls."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []

    def post(self, url: str, json: Any = None, headers: Any = None, timeout: Any = None) -> requests.Response:
        self.calls.append({"url": url, "json": json, "headers": dict(headers or {})})
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


class FakeClock:
    """A clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def __call__(self) -> float:
        return self.now


def client(script: list[Any], key: Optional[str] = "k") -> tuple[ApiClient, FakeSession, FakeClock]:
    session = FakeSession(script)
    clock = FakeClock()
    return ApiClient("http://api:8080/", key, session=session, sleep=clock.sleep, clock=clock), session, clock


class BackoffTest(unittest.TestCase):
    def test_doubles_then_caps(self) -> None:
        d = backoff_delays()
        self.assertEqual([next(d) for _ in range(6)], [0.5, 1.0, 2.0, 4.0, 5.0, 5.0])

    def test_retry_after(self) -> None:
        self.assertEqual(retry_after_s({"Retry-After": "2"}), 2.0)
        self.assertEqual(retry_after_s({"Retry-After": "3600"}), 30.0)
        self.assertIsNone(retry_after_s({"Retry-After": "soon"}))
        self.assertIsNone(retry_after_s({}))


class RegisterTest(unittest.TestCase):
    def test_register_sends_the_key_and_reads_uuid_and_token(self) -> None:
        c, s, clock = client([response(201, {"uuid": "u1", "token": "t1", "statsUrl": "/x", "commitUrl": "/y"})])
        reg = c.register({"a": 1}, budget_s=10)
        self.assertEqual(reg, Registration("u1", "t1"))
        self.assertEqual(s.calls[0]["url"], "http://api:8080/apiv0.1/events/register")
        self.assertEqual(s.calls[0]["headers"]["Authorization"], "Bearer k")
        self.assertEqual(clock.sleeps, [])

    def test_503_is_retried_honouring_retry_after(self) -> None:
        c, s, clock = client(
            [
                response(503, {"detail": "broker down"}, {"Retry-After": "2"}),
                requests.ConnectionError("Connection refused"),
                response(201, {"uuid": "u1", "token": "t1"}),
            ]
        )
        retries: list[str] = []
        c.register({}, budget_s=30, on_retry=lambda what, last, n: retries.append(last))
        self.assertEqual(clock.sleeps, [2.0, 1.0])
        self.assertEqual(len(s.calls), 3)
        self.assertIn("503", retries[0])
        self.assertIn("Connection refused", retries[1])

    def test_4xx_is_not_retried_and_names_the_field(self) -> None:
        c, s, _ = client(
            [response(400, {"title": "Bad Request", "detail": "must be a string", "field": "measurement.fields.clients"})]
        )
        with self.assertRaises(Rejected) as e:
            c.register({}, budget_s=30)
        self.assertEqual(len(s.calls), 1)
        self.assertEqual(e.exception.status, 400)
        self.assertIn("must be a string", str(e.exception))
        self.assertIn("measurement.fields.clients", str(e.exception))

    def test_gives_up_when_the_budget_is_spent(self) -> None:
        c, s, clock = client([requests.ConnectionError("Connection refused")] * 20)
        with self.assertRaises(Unavailable) as e:
            c.register({}, budget_s=4)
        self.assertLessEqual(sum(clock.sleeps), 4)
        self.assertIn("Connection refused", e.exception.last)
        self.assertEqual(e.exception.attempts, len(s.calls))


class StatsAndCommitTest(unittest.TestCase):
    def test_use_the_event_token(self) -> None:
        c, s, _ = client([response(202, {}), response(202, {})])
        reg = Registration("u1", "t1")
        c.stats(reg, {"seq": 1}, budget_s=5)
        c.commit(reg, {"seq": 2}, budget_s=5)
        self.assertEqual(s.calls[0]["url"], "http://api:8080/apiv0.1/events/u1/stats")
        self.assertEqual(s.calls[1]["url"], "http://api:8080/apiv0.1/events/commit")
        self.assertEqual(s.calls[0]["headers"]["Authorization"], "Bearer t1")
        self.assertEqual(s.calls[1]["headers"]["Authorization"], "Bearer t1")


if __name__ == "__main__":
    unittest.main()
