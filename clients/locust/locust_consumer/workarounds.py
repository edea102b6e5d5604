"""A workaround for Locust 2.x that keeps distributed runs alive on busy worker nodes.

A worker that receives a ``spawn`` message from the master (one per worker at every step of the
ramp-up, about once a second) picks the custom options out of it with a comprehension that calls
``locust.argument_parser.default_args_dict()`` once per option in the message
(``WorkerRunner.worker`` in ``locust/runners.py``, 2.32.4; unchanged in later 2.x). Each call
builds Locust's whole argument parser: about 0.36 s of CPU per spawn message. While that runs the
worker sends no heartbeat; on a node where the worker gets a fraction of a core (5 workers on 2
cores), that is more than the master's 3 s heartbeat liveness, so the master marks the worker
missing, takes its users away, and stops the test when every worker is missing — with no user
ever started. Seen here with 3 and 5 workers on 2 cores: "failed to send heartbeat, setting state
to missing", "The last worker went missing, stopping test", 0 requests.

``default_args_dict()`` returns the defaults of Locust's own options, built before any custom
option is added, so it is the same for the life of the process: :func:`cache_default_args`
computes it once and hands out copies.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

logger = logging.getLogger("locust_consumer")

#: Marks the wrapper, so that importing twice does not wrap twice.
_CACHED_MARK = "_locust_consumer_cached"


def cache_default_args(module: Any = None) -> bool:
    """Replaces ``module.default_args_dict`` (``locust.argument_parser`` by default) by a cached
    version returning a fresh copy of the first result; ``True`` if it did (``False`` when the
    function is missing or already cached)."""
    if module is None:
        from locust import argument_parser as module
    original: Callable[[], dict] = getattr(module, "default_args_dict", None)
    if original is None or getattr(original, _CACHED_MARK, False):
        return False

    @functools.lru_cache(maxsize=1)
    def first() -> dict:
        return original()

    @functools.wraps(original)
    def cached() -> dict:
        return dict(first())

    setattr(cached, _CACHED_MARK, True)
    module.default_args_dict = cached
    logger.debug("cached locust.argument_parser.default_args_dict (a worker rebuilt it per option)")
    return True
