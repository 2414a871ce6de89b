"""Every route fuzzed from the gateway's own OpenAPI schema (schemathesis): never a 5xx.

The gateway under test has its own data directory (fuzzed forget requests must not leak into the
other tests' store) and fronts the shared test vLLM. Generated bodies are capped to a few output
tokens so that valid generation requests stay quick on a CPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from gateway.app import build_app
from gateway.config import Settings
from gateway.spawn import fresh_data_dir, start_gateway, stop
from tests.conftest import ADMIN_TOKEN, API_KEY, MODEL, QUIET, LiveGateway


@pytest.fixture(scope="module")
def fuzzed(gateway: LiveGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    url, process = start_gateway(
        root / "gateway.log", "--upstream", gateway.vllm_url,
        "--data-dir", str(fresh_data_dir(root / "data")),
        "--served-model-name", MODEL, "--api-key", API_KEY, "--max-body-bytes", "200000",
        timeout_s=120, env={"OBLIVIATE_ADMIN_TOKEN": ADMIN_TOKEN, **QUIET},
    )  # fmt: skip
    yield url
    stop(process)


def test_every_request_body_is_in_the_openapi_document() -> None:
    document = build_app(Settings()).openapi()
    bodies = {f"{method.upper()} {path}": "requestBody" in operation
              for path, operations in document["paths"].items()
              for method, operation in operations.items() if method in ("post", "put")}  # fmt: skip
    assert bodies.pop("POST /admin/v1/removal-jobs/{job_id}/cancel") is False  # takes none
    assert bodies.pop("POST /admin/v1/forget-requests/{request_id}/purge") is False  # nor this
    assert all(bodies.values()), bodies
    chat = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    schema = chat["content"]["application/json"]["schema"]
    assert schema["properties"]["messages"]["items"]["properties"]["role"]["enum"]  # inlined


PER_ROUTE = 8


def test_no_route_answers_5xx(fuzzed: str) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10

    cases: Counter[str] = Counter()

    @settings(max_examples=PER_ROUTE, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: schemathesis.Case) -> None:
        if isinstance(case.body, dict):
            for field in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
                if field in case.body:
                    case.body[field] = 2
            case.body["n"] = 1
        cases[f"{case.method} {case.path}"] += 1
        token = ADMIN_TOKEN if case.path.startswith("/admin") else API_KEY
        case.call_and_validate(
            base_url=fuzzed, headers={"Authorization": f"Bearer {token}"},
            checks=[not_a_server_error], timeout=120,
        )  # fmt: skip

    for operation in operations:  # every route gets its share of cases
        given(case=operation.as_strategy())(fuzz)()
    print("cases per route:", dict(sorted(cases.items())))
