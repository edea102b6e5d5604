"""The Kubernetes Locust cluster's locustfile (ConfigMap locust-locustfile, mounted at
/mnt/locust/locustfile.py on the master and the workers). Replace the tasks with your own test;
keep ``import locust_consumer``, which records every test in the load-test pipeline.

The target (``LOCUST_HOST``), the users, spawn rate and run time are in run.env.
"""

from locust import FastHttpUser, between, task

import locust_consumer  # noqa: F401  (records the runs: --consumer-host, set by master.yaml)


class ServiceUser(FastHttpUser):
    """A visitor of the service under test: its home page, then its API."""

    wait_time = between(0.5, 2)

    @task(2)
    def home(self) -> None:
        self.client.get("/")

    @task(1)
    def api(self) -> None:
        self.client.get("/api/items")
