"""Locust plugin for the load-test pipeline.

Import it from a locustfile (``import locust_consumer``) and run Locust with
``--consumer-host http://API``: the run is registered at test start, its cumulative stats are sent
every ``--consumer-interval`` and the final stats are committed at test stop, all through the
load-test API (no database credentials). See README.md.

Importing registers the hooks on Locust's global event hooks, once per process. They are
registered at import, before Locust creates its runner, so at ``quitting`` (fired in reverse
order) the runner's own handler, which collects the workers' final reports, runs first.

Importing also applies :func:`cache_default_args` (see ``workarounds.py``): without it, Locust
2.x workers on a busy node miss heartbeats at every spawn step and are dropped as missing.
"""

from __future__ import annotations

from typing import Any, Optional

from locust import events

from .client import ApiClient, ApiError, Registration, Rejected, Unavailable
from .plugin import ConsumerPlugin, Settings, add_arguments, parse_interval, pending_final_reports
from .workarounds import cache_default_args

__all__ = [
    "ApiClient",
    "ApiError",
    "ConsumerPlugin",
    "Registration",
    "Rejected",
    "Settings",
    "Unavailable",
    "add_arguments",
    "cache_default_args",
    "parse_interval",
    "pending_final_reports",
    "plugin",
]

__version__ = "0.1.0"

_plugin: Optional[ConsumerPlugin] = None

# Workers stay alive through the ramp-up on busy nodes (workarounds.py); on every process, since
# the same locustfile runs on the master and the workers.
cache_default_args()


def plugin() -> Optional[ConsumerPlugin]:
    """This process's plugin instance (``None`` before Locust's ``init`` event)."""
    return _plugin


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_kw: Any) -> None:
    add_arguments(parser)


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    global _plugin
    options = getattr(environment, "parsed_options", None)
    _plugin = ConsumerPlugin(environment, Settings.from_options(options)) if options is not None else None
    web_ui = getattr(environment, "web_ui", None)
    if _plugin is not None and _plugin.active and web_ui is not None:
        _plugin.add_web_route(web_ui)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    if _plugin is not None:
        _plugin.on_test_start(environment)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kw: Any) -> None:
    if _plugin is not None:
        _plugin.on_test_stop(environment)


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict, **_kw: Any) -> None:
    if _plugin is not None:
        _plugin.on_worker_report(client_id, data)


@events.quitting.add_listener
def _on_quitting(environment: Any, **_kw: Any) -> None:
    if _plugin is not None:
        _plugin.on_quitting(environment)
