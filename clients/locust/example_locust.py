"""Example locustfile recorded in the load-test pipeline.

Against the demo target that ``loadgen target`` serves (``/``, ``/api/items``, ``/api/slow``;
start it with ``loadgen target --listen 127.0.0.1:8000``), every request succeeds and Locust
exits 0:

    pip install ./clients/locust
    locust -f clients/locust/example_locust.py --host=http://127.0.0.1:8000 --headless \
        -u 5 -r 10 -t 20s --only-summary --consumer-host http://127.0.0.1:8080

Set the API key with ``--consumer-api-key`` or ``LOCUST_CONSUMER_API_KEY``.
"""

from locust import HttpUser, between, task

import locust_consumer  # noqa: F401  (registers the --consumer-* options and hooks)


class WebsiteUser(HttpUser):
    """Browses the home page, the items and a slow page of the demo target."""

    wait_time = between(0.05, 0.2)

    @task(3)
    def index(self) -> None:
        self.client.get("/")

    @task(2)
    def items(self) -> None:
        self.client.get("/api/items")

    @task(1)
    def slow(self) -> None:
        self.client.get("/api/slow")
