"""Shared test configuration: hypothesis profiles (derandomised in CI), and the demo server of lrp-ref serve."""

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    """lrp-ref serve's server on the shipped models, on a free port of 127.0.0.1, in a thread."""
    from nets import SERVE_MODELS, SERVE_SAMPLES

    from lrp_ref.serve import Demo, make_server

    srv = make_server(Demo.from_files(SERVE_MODELS, SERVE_SAMPLES), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)
