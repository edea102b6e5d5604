"""The end-to-end tests' locustfile (tests/e2e/tests/locust.rs): against the tests' counting
target, ``/`` and ``/items`` answer 200 and ``/fail`` answers 500, so every run has failures to
record. Users start from ``clients/locust/example_locust.py``, which runs green against
``loadgen target``.
"""

from locust import HttpUser, between, task

import locust_consumer  # noqa: F401  (registers the --consumer-* options and hooks)


class WebsiteUser(HttpUser):
    """Browses the home page and the items; one endpoint fails on purpose (HTTP 500)."""

    wait_time = between(0.05, 0.2)

    @task(3)
    def index(self) -> None:
        self.client.get("/")

    @task(2)
    def items(self) -> None:
        self.client.get("/items")

    @task(1)
    def broken(self) -> None:
        self.client.get("/fail")
