"""Unit tests of the plugin: ``python3 -m unittest discover -s tests -t .`` (or pytest)."""

# Locust monkey-patches the standard library with gevent on import; do it before anything else
# (requests, ssl) is imported, as a locustfile does.
import locust  # noqa: F401
