"""The deploy/ topology: deploy/docker-compose.yml parsed, and deploy/nginx.conf run by Debian's
nginx on loopback in front of two `thisthat serve` nodes, for websocket and long-polling clients
and a push crossing from one node to a socket on the other."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as redis
import socketio
import yaml

from storage.embedded import free_port
from tests.betting_fixtures import insert_market
from tests.nodes import ServerNode
from tests.players import Player

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX_CONF = DEPLOY / "nginx.conf"
COMPOSE = DEPLOY / "docker-compose.yml"
NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
)
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run does)"
)
# The server's engine.io ping: interval + timeout, seconds (server/sockets/server.py).
PING_INTERVAL_S, PING_TIMEOUT_S = 25, 20


def test_compose_file_runs_postgres_redis_nodes_and_nginx() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    nodes = [name for name, service in services.items() if "build" in service]
    assert len(nodes) >= 2
    assert {"postgres", "redis", "nginx"} <= set(services)
    for name, service in services.items():
        assert service["restart"] in {"always", "unless-stopped"}, name
    for name in nodes:
        node = services[name]
        assert node["env_file"] == ".env"
        assert node["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in node["environment"]["DATABASE_URL"]
        assert "@redis:6379/" in node["environment"]["REDIS_URL"]
        assert node["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert node["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "ports" not in node, "nodes are reached through nginx only"
    # Secrets come from deploy/.env, never from the committed file.
    text = COMPOSE.read_text()
    assert "change-me" not in text and "${POSTGRES_PASSWORD:?" in text
    example = (DEPLOY / ".env.example").read_text()
    for secret in (
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "JWT_ACCESS_SECRET",
        "JWT_REFRESH_SECRET",
    ):
        assert re.search(rf"^{secret}=\S+", example, re.MULTILINE), secret
    nginx = services["nginx"]
    assert any("nginx.conf:/etc/nginx/nginx.conf" in volume for volume in nginx["volumes"])
    assert set(nginx["depends_on"]) == set(nodes)
    upstreams = re.findall(r"^\s*server (\w+):3000\b", NGINX_CONF.read_text(), re.MULTILINE)
    assert sorted(upstreams) == sorted(nodes), "nginx.conf lists every node of the compose file"


def test_nginx_conf_carries_websocket_headers_stickiness_and_long_timeouts() -> None:
    text = NGINX_CONF.read_text()
    assert "hash $remote_addr consistent;" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $connection_upgrade;" in text
    socket_io = text[text.index("location /socket.io/") :]
    socket_io = socket_io[: socket_io.index("}")]
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        seconds = int(re.search(rf"{directive} (\d+)s;", socket_io).group(1))  # type: ignore[union-attr]
        assert seconds > PING_INTERVAL_S + PING_TIMEOUT_S, directive


def render_nginx_conf(workdir: Path, listen_port: int, node_ports: list[int]) -> Path:
    """The committed config with loopback addresses, and its files kept under `workdir`."""
    text = NGINX_CONF.read_text()
    servers = re.findall(r"^(\s*)server \w+:3000( .*;)$", text, re.MULTILINE)
    assert len(servers) >= 2 and len(node_ports) == len(servers)
    ports = iter(node_ports)
    text = re.sub(
        r"^(\s*)server \w+:3000( .*;)$",
        lambda match: f"{match.group(1)}server 127.0.0.1:{next(ports)}{match.group(2)}",
        text,
        flags=re.MULTILINE,
    )
    assert "listen 80;" in text
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
    text = text.replace("worker_processes auto;", "worker_processes 1;")
    text = f"pid {workdir}/nginx.pid;\nerror_log {workdir}/error.log;\n" + text
    temp_paths = "".join(
        f"    {kind}_temp_path {workdir}/{kind}_temp;\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp_paths, 1)
    path = workdir / "nginx.conf"
    path.write_text(text)
    return path


def nginx_command(workdir: Path, conf: Path, *args: str) -> list[str]:
    assert NGINX is not None
    return [NGINX, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log"), *args]


@pytest.fixture
def nginx_dir(tmp_path: Path) -> Path:
    workdir = tmp_path / "nginx"
    workdir.mkdir()
    return workdir


@pytest.fixture
def proxy(nginx_dir: Path) -> Iterator[Any]:
    """Starts nginx on a rendered config; yields a function (node ports) -> proxy URL."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(node_ports: list[int]) -> str:
        port = free_port()
        conf = render_nginx_conf(nginx_dir, port, node_ports)
        checked = subprocess.run(  # noqa: S603 - our nginx, our config
            nginx_command(nginx_dir, conf, "-t"), capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stderr
        assert "test is successful" in checked.stderr
        processes.append(
            subprocess.Popen(  # noqa: S603
                nginx_command(nginx_dir, conf, "-g", "daemon off;"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


async def wait_until_ready(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(100):
        try:
            async with http.get(url + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


@pytest.fixture
async def cluster(
    service_urls: tuple[str, str],
    tmp_path: Path,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
) -> AsyncIterator[list[ServerNode]]:
    nodes = [ServerNode(*service_urls, tmp_path) for _ in range(2)]
    try:
        for node in nodes:
            await node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def connected_sockets(http: aiohttp.ClientSession, node: ServerNode) -> int:
    async with http.get(node.url + "/metrics") as response:
        text = await response.text()
    match = re.search(r"^thisthat_connected_sockets (\S+)$", text, re.MULTILINE)
    assert match
    return int(float(match.group(1)))


@needs_nginx
@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_clients_through_nginx_over_websocket_and_polling_get_pushes_from_the_other_node(
    cluster: list[ServerNode],
    proxy: Any,
    db: asyncpg.Pool,
    http: aiohttp.ClientSession,
) -> None:
    market = str(await insert_market(db))
    url = proxy([node.port for node in cluster])
    await wait_until_ready(http, url)

    # REST and a websocket through the proxy.
    player = await Player(url, http).signup()
    await player.connect()
    await player.next("session")
    assert (await player.ok("wallet:get"))["balance"] == 1000

    # Long-polling through the proxy: every request of the session must reach the same node.
    polled: asyncio.Queue[Any] = asyncio.Queue()
    polling = socketio.AsyncClient(reconnection=False, http_session=http)
    polling.on("balance", polled.put_nowait)
    await polling.connect(
        url, auth={"token": player.access_token}, transports=["polling"], wait_timeout=10
    )
    try:
        assert polling.transport() == "polling"
        for _ in range(3):
            answer = await polling.call("wallet:get", {}, timeout=15)
            assert answer["ok"] is True, answer

        # Both proxied sockets came from one address, so they sit on one node.
        counts = [await connected_sockets(http, node) for node in cluster]
        assert sorted(counts) == [0, 2], counts
        other = cluster[counts.index(0)]

        # A bet on the other node, straight to it: its balance push must cross Redis to both.
        direct = Player(other.url, http)
        direct.user, direct.access_token = player.user, player.access_token
        await direct.connect()
        placed = await direct.ok(
            "bet:place", {"marketId": market, "side": "this", "amount": 10, "clientBetId": "px1"}
        )
        assert (await player.next("balance"))["balance"] == placed["balance"]
        assert (await asyncio.wait_for(polled.get(), 10))["balance"] == placed["balance"]
        await direct.close()
    finally:
        await polling.disconnect()
        await player.close()
