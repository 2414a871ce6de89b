"""/health, /metrics and the overhead header."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import httpx
from openai import OpenAI

from gateway.openai.serving import OVERHEAD_HEADER
from tests.conftest import MODEL, LiveGateway


def test_health(gateway: LiveGateway) -> None:
    assert httpx.get(f"{gateway.url}/health").status_code == 200


def test_an_idle_connection_stays_open(gateway: LiveGateway) -> None:
    """Clients pool an idle connection for 5 s (httpx, the openai client): the gateway keeps it
    open longer, so a request sent on it is not lost to the server closing it at that moment."""
    url = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port)
    for pause in (6, 0):
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        time.sleep(pause)
    connection.close()


def test_overhead_header_and_metrics(gateway: LiveGateway, client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert float(raw.headers[OVERHEAD_HEADER]) >= 0
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2, stream=True
    )
    list(stream)

    metrics = httpx.get(f"{gateway.url}/metrics").text
    for name in (
        'obliviate_requests_total{route="/v1/chat/completions",status="200"}',
        'obliviate_request_duration_seconds_count{route="/v1/chat/completions"}',
        'obliviate_time_to_first_token_seconds_count{route="/v1/chat/completions"}',
        'obliviate_overhead_seconds_count{route="/v1/chat/completions"}',
        "obliviate_upstream_errors_total",
        "obliviate_engine_ready 1.0",
    ):
        assert name in metrics, name
