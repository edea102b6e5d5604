"""Client of the load-test API (``/apiv0.1/events/...``): register, stats, commit.

A ``503`` (honouring ``Retry-After``), ``502``, ``504``, ``429`` or a connection error is
retried with capped exponential backoff (0.5 s doubling to 5 s) until the call's retry budget is
spent; any other 4xx/5xx raises :class:`Rejected` carrying the problem+json ``detail`` and
``field``. Waits use ``gevent.sleep``, so a retrying call only blocks its own greenlet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import gevent
import requests

#: First retry delay, seconds.
BACKOFF_START_S = 0.5
#: Longest delay between retries, seconds.
BACKOFF_MAX_S = 5.0
#: Longest ``Retry-After`` honoured, seconds.
RETRY_AFTER_MAX_S = 30.0
#: Timeout of one HTTP request, seconds.
REQUEST_TIMEOUT_S = 10.0
#: Statuses worth retrying: the API or something in front of it is briefly unavailable.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class ApiError(Exception):
    """A call to the load-test API failed."""


class Rejected(ApiError):
    """The API answered with an error that retrying cannot fix (4xx, 500)."""

    def __init__(self, what: str, status: int, detail: str, field: Optional[str]) -> None:
        self.what = what
        self.status = status
        self.detail = detail
        self.field = field
        msg = f"{what} rejected by the API: HTTP {status}"
        if detail:
            msg += f": {detail}"
        if field:
            msg += f" (field `{field}`)"
        super().__init__(msg)


class Unavailable(ApiError):
    """The API stayed unreachable (connection errors, 503s) for the call's whole retry budget."""

    def __init__(self, what: str, url: str, attempts: int, elapsed_s: float, last: str) -> None:
        self.what = what
        self.url = url
        self.attempts = attempts
        self.last = last
        super().__init__(
            f"{what} failed: the API at {url} stayed unavailable for {elapsed_s:.1f} s "
            f"({attempts} attempts); last error: {last}"
        )


@dataclass(frozen=True)
class Registration:
    """What register answers: the run's uuid and its event token."""

    uuid: str
    token: str


def backoff_delays(start: float = BACKOFF_START_S, cap: float = BACKOFF_MAX_S):
    """Yields retry delays: ``start``, doubling, capped at ``cap``."""
    delay = start
    while True:
        yield delay
        delay = min(delay * 2, cap)


def retry_after_s(headers: Mapping[str, str]) -> Optional[float]:
    """The ``Retry-After`` header in seconds (capped), or ``None`` if absent or not a number."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_MAX_S)


def describe_problem(response: requests.Response) -> tuple[str, Optional[str]]:
    """``(detail, field)`` from a problem+json body; the body's start when it is not JSON."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:300], None
    if not isinstance(body, dict):
        return str(body)[:300], None
    detail = body.get("detail") or body.get("title") or ""
    field = body.get("field")
    return str(detail), (str(field) if field is not None else None)


class ApiClient:
    """Calls the API at ``base_url`` (``http://host:port``, optionally with a path prefix).

    ``on_retry(what, error_text, attempt)`` is called before each retry wait, so the caller can
    report an outage once instead of once per attempt.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str] = None,
        session: Optional[requests.Session] = None,
        sleep: Callable[[float], Any] = gevent.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock

    def register(
        self,
        body: dict[str, Any],
        budget_s: float,
        on_retry: Optional[Callable[[str, str, int], None]] = None,
    ) -> Registration:
        """``POST /apiv0.1/events/register`` with the API key; returns the uuid and token."""
        headers = {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        response = self._post("register", "/apiv0.1/events/register", body, headers, budget_s, on_retry)
        try:
            answer = response.json()
            return Registration(uuid=str(answer["uuid"]), token=str(answer.get("token") or ""))
        except (ValueError, KeyError, TypeError) as e:
            raise ApiError(f"register: unexpected response from the API: {response.text[:300]!r} ({e})") from e

    def stats(
        self,
        registration: Registration,
        body: dict[str, Any],
        budget_s: float,
        on_retry: Optional[Callable[[str, str, int], None]] = None,
    ) -> None:
        """``POST /apiv0.1/events/{uuid}/stats`` with the event token."""
        self._post(
            "stats",
            f"/apiv0.1/events/{registration.uuid}/stats",
            body,
            self._token_headers(registration),
            budget_s,
            on_retry,
        )

    def commit(
        self,
        registration: Registration,
        body: dict[str, Any],
        budget_s: float,
        on_retry: Optional[Callable[[str, str, int], None]] = None,
    ) -> None:
        """``POST /apiv0.1/events/commit`` with the event token."""
        self._post("commit", "/apiv0.1/events/commit", body, self._token_headers(registration), budget_s, on_retry)

    @staticmethod
    def _token_headers(registration: Registration) -> dict[str, str]:
        return {"Authorization": f"Bearer {registration.token}"} if registration.token else {}

    def _post(
        self,
        what: str,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str],
        budget_s: float,
        on_retry: Optional[Callable[[str, str, int], None]],
    ) -> requests.Response:
        """POSTs ``body`` as JSON, retrying retryable failures until ``budget_s`` is spent."""
        url = self.base_url + path
        started = self._clock()
        delays = backoff_delays()
        attempts = 0
        while True:
            attempts += 1
            wait: Optional[float] = None
            try:
                response = self.session.post(url, json=body, headers=headers, timeout=REQUEST_TIMEOUT_S)
            except requests.RequestException as e:
                last = f"{type(e).__name__}: {_short(e)}"
            else:
                if 200 <= response.status_code < 300:
                    return response
                detail, field = describe_problem(response)
                if response.status_code not in RETRYABLE_STATUSES:
                    raise Rejected(what, response.status_code, detail, field)
                last = f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
                wait = retry_after_s(response.headers)
            delay = next(delays)
            if wait is not None:
                delay = max(delay, wait)
            elapsed = self._clock() - started
            if elapsed + delay > budget_s:
                raise Unavailable(what, url, attempts, elapsed, last)
            if on_retry is not None:
                on_retry(what, last, attempts)
            self._sleep(delay)


def _short(e: BaseException) -> str:
    """The root cause of a requests exception, on one line (``Connection refused``)."""
    text = str(e)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if marker in text:
            return marker
    return text.replace("\n", " ")[:200]
