"""Two gateway replicas on one PostgreSQL (started for real) in front of two upstreams.

The upstreams are two TCP relays in front of the session's vLLM (real, SmolLM2): killing a relay
is, for the gateway, an upstream dying (open connections reset, new ones refused), without the
40 s and 2 GB of a second vLLM server on this 2-core machine.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from gateway.spawn import start_gateway, stop
from tests.conftest import (
    ADMIN_TOKEN,
    API_KEY,
    MODEL,
    QUIET,
    LiveGateway,
    PostgresServer,
    fresh_data_dir,
)

BOUND_S = 1.0
SUBJECT = "Quillon Arbuthnot-Vex"


class Relay:
    """Forwards TCP connections from a free loopback port to ``target_port`` until killed."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                self.sockets += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)

    def kill(self) -> None:
        """Like a dead server: refuse new connections and cut the open ones mid-answer."""
        self.server.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the relay's threads blocked in recv
                sock.close()


@dataclass
class Replicas:
    a: str
    b: str
    relays: list[Relay]
    restart_b: Callable[[], str]
    """Stop replica b and start it again on the same data directory; its new URL."""


@pytest.fixture(scope="module")
def replicas(
    gateway: LiveGateway, postgres: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    database = f"{postgres}/postgres"
    vllm_port = int(gateway.vllm_url.rsplit(":", 1)[1])
    relays = [Relay(vllm_port), Relay(vllm_port)]
    upstreams = ",".join(f"http://127.0.0.1:{relay.port}" for relay in relays)
    processes = {}

    def start(name: str) -> str:
        url, processes[name] = start_gateway(
            root / f"{name}.log",
            "--data-dir", str(fresh_data_dir(root / name)),
            "--upstream", upstreams,
            "--database-url", database,
            "--api-key", API_KEY,
            env={"OBLIVIATE_ADMIN_TOKEN": ADMIN_TOKEN, **QUIET},
        )  # fmt: skip
        return url

    def restart_b() -> str:
        stop(processes["b"])
        return start("b")

    yield Replicas(start("a"), start("b"), relays, restart_b)
    for process in processes.values():
        stop(process)


def blocked(http: httpx.Client, url: str) -> bool:
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Who is {SUBJECT}?"}]}
    response = http.post(f"{url}/v1/chat/completions", json=body | {"max_tokens": 1})
    assert response.status_code == 200, response.text
    return "retrieval" in response.headers["x-obliviate-layers"]


def enforced(url: str) -> int:
    """Forget requests in the replica's index (its ``/metrics`` gauge): cheap to poll."""
    text = httpx.get(f"{url}/metrics").text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("obliviate_forget_index_requests ")]
    return int(float(line.split()[1]))


def seconds_until(url: str, count: int) -> float:
    start = time.monotonic()
    while enforced(url) != count:
        assert time.monotonic() - start < 10, "never took effect"
        time.sleep(0.01)
    return time.monotonic() - start


def test_a_forget_request_on_one_replica_is_enforced_by_the_other(replicas: Replicas) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as http:
        assert not blocked(http, replicas.b)
        before = enforced(replicas.b)
        created = httpx.post(
            f"{replicas.a}/admin/v1/forget-requests", json={"subject": SUBJECT}, headers=admin
        )
        assert created.status_code == 201
        assert blocked(http, replicas.a)  # at once where it was posted
        added = seconds_until(replicas.b, before + 1)
        assert added < BOUND_S and blocked(http, replicas.b)
        url = f"{replicas.b}/admin/v1/forget-requests/{created.json()['id']}"
        assert httpx.delete(url, headers=admin).status_code == 200
        revoked = seconds_until(replicas.a, before)
        assert revoked < BOUND_S and not blocked(http, replicas.a)
    print(f"applied by the other replica after {added:.3f} s (add), {revoked:.3f} s (revoke)")


def test_a_routing_change_on_one_replica_is_served_by_the_other(replicas: Replicas) -> None:
    """Letting anyone pick an arm by header, PUT on replica a, is served by b within 1 s, and
    survives b's restart (the routing is a row of the shared database)."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    user = {"Authorization": f"Bearer {API_KEY}", "x-obliviate-arm": "suppression"}
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 1}

    def picks_arm(url: str) -> bool:
        status = httpx.post(f"{url}/v1/completions", json=body, headers=user, timeout=60)
        return status.status_code == 200

    assert not picks_arm(replicas.b)  # the header is the admin's by default
    put = httpx.put(f"{replicas.a}/admin/v1/routing", json={"header": "anyone"}, headers=admin)
    assert put.status_code == 200, put.text
    start = time.monotonic()
    while not picks_arm(replicas.b):
        assert time.monotonic() - start < BOUND_S, "replica b never applied the routing"
    applied = time.monotonic() - start
    replicas.b = replicas.restart_b()
    assert httpx.get(f"{replicas.b}/admin/v1/routing", headers=admin).json()["header"] == "anyone"
    assert picks_arm(replicas.b)
    assert httpx.put(f"{replicas.b}/admin/v1/routing", json={}, headers=admin).status_code == 200
    print(f"routing applied by the other replica after {applied:.3f} s")


def test_background_tasks_resume_after_a_database_outage(
    replicas: Replicas, postgres_server: PostgresServer
) -> None:
    """5 s without the database: the replicas' loops fail (``/health`` says which), then resume
    on their own: a forget request filed after it on one replica reaches the other."""

    def failing(url: str) -> set[str]:
        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 200  # serving goes on: the engine answers
        return set(health.json()["failing"])

    postgres_server.stop()
    try:
        start = time.monotonic()
        while not {"index_sync", "routing_sync", "removal_runner"} <= failing(replicas.a):
            assert time.monotonic() - start < 10, failing(replicas.a)
            time.sleep(0.1)
        time.sleep(max(0.0, 5 - (time.monotonic() - start)))
    finally:
        postgres_server.start()
    start = time.monotonic()
    while failing(replicas.a) or failing(replicas.b):
        assert time.monotonic() - start < 60, (failing(replicas.a), failing(replicas.b))
        time.sleep(0.2)
    print(f"every background task worked again {time.monotonic() - start:.1f} s after")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    before = enforced(replicas.a)
    created = httpx.post(f"{replicas.b}/admin/v1/forget-requests", headers=admin,
                         json={"subject": "Ottoline Grassmere-Quay"})  # fmt: skip
    assert created.status_code == 201, created.text
    assert seconds_until(replicas.a, before + 1) < BOUND_S
    url = f"{replicas.b}/admin/v1/forget-requests/{created.json()['id']}"
    assert httpx.delete(url, headers=admin).status_code == 200


def test_a_dead_upstream_loses_no_request(replicas: Replicas) -> None:
    """32 completions at concurrency 8; one of the two upstreams dies after the first few. Every
    request had not started streaming to its client, so each is answered by the other one."""
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0}
    done = threading.Semaphore(0)

    def complete(_: int) -> int:
        with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120) as http:
            status = http.post(f"{replicas.a}/v1/completions", json=body).status_code
        done.release()
        return status

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(complete, i) for i in range(32)]
        for _ in range(4):
            done.acquire()
        replicas.relays[0].kill()
        statuses = [future.result() for future in futures]
    assert statuses == [200] * 32
    assert httpx.get(f"{replicas.a}/health").status_code == 200
