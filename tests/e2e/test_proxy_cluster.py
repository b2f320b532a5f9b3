"""The deploy/ topology: deploy/docker-compose.yml parsed, and deploy/nginx.conf (and the TLS
template) run by Debian's nginx on loopback in front of two `thisthat serve` nodes, for websocket
and long-polling clients, a push crossing from one node to a socket on the other, and per-address
budgets that follow each player through the proxy."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import ssl
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
from tests.players import Player, unique_name

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX_CONF = DEPLOY / "nginx.conf"
NGINX_TLS_TEMPLATE = DEPLOY / "nginx-tls.conf.template"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_TLS = DEPLOY / "docker-compose.tls.yml"
OPENSSL = shutil.which("openssl")
NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
)
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run does)"
)
# The server's engine.io ping: interval + timeout, seconds (server/sockets/server.py).
PING_INTERVAL_S, PING_TIMEOUT_S = 25, 20


def env_file(path: Path) -> dict[str, str]:
    """The NAME=value lines of a compose .env file (comments and blank lines skipped)."""
    pairs = re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", path.read_text(), re.MULTILINE)
    return {name: value.strip() for name, value in pairs}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message} against `env` ($$ stays $$)."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        assert op != ":?", f"{name} is required: {arg}"
        return arg if op == ":-" else ""

    return re.sub(r"(?<!\$)\$\{(\w+)(?:(:[-?])([^}]*))?\}", value, text)


def compose_config(path: Path = COMPOSE, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as docker compose reads it with deploy/.env.example as deploy/.env."""
    env = env_file(DEPLOY / ".env.example") if env is None else env
    config: dict[str, Any] = yaml.safe_load(interpolate(path.read_text(), env))
    return config


def postgres_options(compose: dict[str, Any]) -> dict[str, str]:
    """The `-c name=value` settings the compose file starts PostgreSQL with."""
    command = compose["services"]["postgres"]["command"]
    assert command[0] == "postgres"
    return dict(
        command[i + 1].split("=", 1) for i in range(1, len(command), 2) if command[i] == "-c"
    )


def test_compose_interpolation_reads_defaults_and_required_values() -> None:
    text = "a: ${X:-1}\nb: ${Y:?set Y}\nc: $${Z}\nd: ${W}"
    assert interpolate(text, {"Y": "2"}) == "a: 1\nb: 2\nc: $${Z}\nd: "
    assert interpolate(text, {"X": "3", "Y": "4"}).startswith("a: 3\nb: 4")
    with pytest.raises(AssertionError, match="Y is required"):
        interpolate(text, {})


def node_services(compose: dict[str, Any]) -> list[str]:
    return [name for name, service in compose["services"].items() if "build" in service]


def test_nodes_trust_x_forwarded_for_from_exactly_the_compose_network() -> None:
    """The whole player base shared one budget behind nginx until the nodes trusted its network."""
    example = env_file(DEPLOY / ".env.example")
    assert "TRUSTED_PROXIES" not in example, "the compose file sets it, from INTERNAL_SUBNET"
    for env in (example, {k: v for k, v in example.items() if k != "INTERNAL_SUBNET"}):
        compose = compose_config(env=env)
        subnets = [pool["subnet"] for pool in compose["networks"]["default"]["ipam"]["config"]]
        assert len(subnets) == 1
        subnet = ipaddress.ip_network(subnets[0])  # a network address, not a host in one
        assert subnet.is_private
        for name, service in compose["services"].items():
            assert "networks" not in service and "network_mode" not in service, name
        for name in node_services(compose):
            trusted = compose["services"][name]["environment"]["TRUSTED_PROXIES"]
            assert [ipaddress.ip_network(item.strip()) for item in trusted.split(",")] == [
                subnet
            ], name
    # One variable feeds both, so changing the subnet cannot leave the nodes trusting the old one.
    text = COMPOSE.read_text()
    assert text.count("${INTERNAL_SUBNET:-") == 2


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


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's short-syntax volumes: container path -> source (files relative to deploy/)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        found[target] = source
    return found


def deploy_file(source: str) -> Path:
    assert source.startswith("./"), source
    path = DEPLOY / source
    assert path.exists(), f"{source} is mounted but not in deploy/"
    return path


def test_compose_runs_prometheus_on_our_rules_and_grafana_on_our_dashboard() -> None:
    compose = compose_config()
    services = compose["services"]
    nodes = node_services(compose)

    prometheus = services["prometheus"]
    files = mounts(prometheus)
    config_path = next(
        arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file=")
    )
    config = yaml.safe_load(deploy_file(files[config_path]).read_text())
    rule_files = [deploy_file(files[path]) for path in config["rule_files"]]
    assert rule_files == [DEPLOY / "alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["thisthat"]  # the job the alert rules select on
    assert 'job="thisthat"' in (DEPLOY / "alerts.yml").read_text()
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert sorted(targets) == sorted(f"{node}:3000" for node in nodes)
    # Production nodes answer /metrics only with METRICS_TOKEN: it comes from deploy/.env.
    assert job.get("metrics_path", "/metrics") == "/metrics"
    token_file = job["authorization"]["credentials_file"]
    secret = token_file.removeprefix("/run/secrets/")
    assert secret in prometheus["secrets"]
    assert compose["secrets"][secret] == {"environment": "METRICS_TOKEN"}
    assert re.search(r"^METRICS_TOKEN=\S+", (DEPLOY / ".env.example").read_text(), re.MULTILINE)
    assert any(target.endswith(":/prometheus") for target in prometheus["volumes"])

    grafana = services["grafana"]
    files = mounts(grafana)
    provisioning = deploy_file(files["/etc/grafana/provisioning"])
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "thisthat.yml").read_text())
    (provider,) = providers["providers"]
    folder = provider["options"]["path"].rstrip("/")
    dashboards = [deploy_file(src) for dst, src in files.items() if dst.startswith(folder + "/")]
    assert dashboards == [DEPLOY / "grafana-dashboard.json"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert "${GRAFANA_ADMIN_PASSWORD:?" in COMPOSE.read_text()
    # Monitoring is for the operator: published on loopback only.
    for name in ("prometheus", "grafana"):
        for port in services[name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), (name, port)


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (apt-get install prometheus)",
)
def test_prometheus_accepts_its_config_with_the_files_compose_mounts(tmp_path: Path) -> None:
    compose = compose_config()
    prometheus = compose["services"]["prometheus"]
    text = (DEPLOY / "prometheus.yml").read_text()
    for target, source in mounts(prometheus).items():
        if source.startswith("./"):
            text = text.replace(target, str(deploy_file(source)))
    token = tmp_path / "metrics_token"
    token.write_text("change-me-metrics-token\n")
    for secret in prometheus["secrets"]:
        text = text.replace(f"/run/secrets/{secret}", str(token))
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [str(shutil.which("promtool")), "check", "config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_compose_postgres_archives_wal_as_backup_md_describes() -> None:
    compose = compose_config()
    postgres = compose["services"]["postgres"]
    options = postgres_options(compose)
    backup_md = (DEPLOY / "backup.md").read_text()
    assert options["wal_level"] == "replica"
    assert options["archive_mode"] == "on"
    assert f"archive_command = '{options['archive_command']}'" in backup_md
    assert int(options["archive_timeout"]) <= 60
    archive = re.search(r"cp %p (\S+)/%f$", options["archive_command"]).group(1)  # type: ignore[union-attr]
    # The archive is a volume (named, or BACKUP_DIR on the host), not inside the data directory.
    backup_mount = next(
        target for target in mounts(postgres) if archive.startswith(target.rstrip("/") + "/")
    )
    source = mounts(postgres)[backup_mount]
    assert source in compose["volumes"] or source.startswith("/"), source
    assert not archive.startswith("/var/lib/postgresql")
    # The server runs as `postgres`: the entrypoint hands it the archive before starting.
    entry = " ".join(postgres["entrypoint"])
    assert f"chown postgres:postgres {backup_mount}" in entry and archive in entry
    assert 'exec docker-entrypoint.sh "$$@"' in COMPOSE.read_text()
    host_backup = compose_config(env={**env_file(DEPLOY / ".env.example"), "BACKUP_DIR": "/srv/b"})
    assert mounts(host_backup["services"]["postgres"])[backup_mount] == "/srv/b"


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


def proxied_locations(text: str) -> list[str]:
    return re.findall(r"location [^{]*\{[^}]*proxy_pass[^}]*\}", text)


def test_nginx_sends_only_the_address_it_saw_as_x_forwarded_for() -> None:
    """nginx is the edge: whatever X-Forwarded-For a client wrote is replaced, never appended to,
    so a node never reads an address the player chose (even from inside TRUSTED_PROXIES)."""
    for path in (NGINX_CONF, NGINX_TLS_TEMPLATE):
        text = path.read_text()
        locations = proxied_locations(text)
        assert len(locations) == 2, path
        for location in locations:
            headers = re.findall(r"proxy_set_header X-Forwarded-For (\S+);", location)
            assert headers == ["$remote_addr"], (path.name, location)
        assert "$proxy_add_x_forwarded_for" not in text, path


def test_tls_template_proxies_exactly_like_nginx_conf() -> None:
    plain, tls = NGINX_CONF.read_text(), NGINX_TLS_TEMPLATE.read_text()
    assert proxied_locations(tls) == proxied_locations(plain)
    upstream = re.compile(r"upstream thisthat \{[^}]*\}")
    assert upstream.findall(tls) == upstream.findall(plain)
    assert re.findall(r"\$\{(\w+)\}", tls) == ["TLS_CERT", "TLS_KEY"]
    assert "listen 443 ssl;" in tls and "return 301 https://$host$request_uri;" in tls

    compose = compose_config(
        COMPOSE_TLS, env={"TLS_DIR": "/etc/letsencrypt", "TLS_CERT": "/etc/nginx/tls/c.pem"}
    )
    nginx = compose["services"]["nginx"]
    env = nginx["environment"]
    files = mounts(nginx)
    template_dir, output_dir = env["NGINX_ENVSUBST_TEMPLATE_DIR"], env["NGINX_ENVSUBST_OUTPUT_DIR"]
    (template,) = [t for t in files if t.startswith(template_dir + "/")]
    assert deploy_file(files[template]) == NGINX_TLS_TEMPLATE
    rendered = f"{output_dir}/{Path(template).name.removesuffix('.template')}"
    assert nginx["command"][:3] == ["nginx", "-c", rendered]
    # Only TLS_* is substituted: nginx's own $variables stay as they are.
    assert env["NGINX_ENVSUBST_FILTER"] == "^TLS_"
    assert env["TLS_CERT"] == "/etc/nginx/tls/c.pem"
    assert env["TLS_KEY"].startswith("/etc/nginx/tls/")
    assert files["/etc/nginx/tls"] == "/etc/letsencrypt"
    assert any(str(port).endswith(":443") for port in nginx["ports"])
    with pytest.raises(AssertionError, match="TLS_DIR is required"):
        compose_config(COMPOSE_TLS, env={})


def render_nginx_conf(
    workdir: Path,
    listen_port: int,
    node_ports: list[int],
    *,
    source: Path = NGINX_CONF,
    tls_port: int | None = None,
    variables: dict[str, str] | None = None,
) -> Path:
    """The committed config (or template, its ${VARIABLES} filled in as the nginx image's envsubst
    does) with loopback addresses, and its files kept under `workdir`."""
    text = source.read_text()
    for name, value in (variables or {}).items():
        text = text.replace(f"${{{name}}}", value)
    assert not re.search(r"\$\{\w+\}", text), "every template variable is given"
    if tls_port is not None:
        assert "listen 443 ssl;" in text
        text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;")
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
    path = workdir / source.name.removesuffix(".template")
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

    def start(node_ports: list[int], **render: Any) -> str:
        port = free_port()
        conf = render_nginx_conf(nginx_dir, port, node_ports, **render)
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


needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as TLS_CERT and TLS_KEY would name them."""
    assert OPENSSL is not None
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    request = (
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
        " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    )
    subprocess.run(  # noqa: S603 - fixed arguments
        [OPENSSL, *request.split(), "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        check=True,
    )
    return cert, key


@needs_nginx
@needs_openssl
def test_nginx_accepts_the_tls_template_with_a_certificate(nginx_dir: Path) -> None:
    cert, key = self_signed_certificate(nginx_dir / "tls")
    conf = render_nginx_conf(
        nginx_dir,
        free_port(),
        [free_port(), free_port()],
        source=NGINX_TLS_TEMPLATE,
        tls_port=free_port(),
        variables={"TLS_CERT": str(cert), "TLS_KEY": str(key)},
    )
    checked = subprocess.run(  # noqa: S603 - our nginx, our config
        nginx_command(nginx_dir, conf, "-t"), capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
    # A key that does not exist is refused, so the check above did load the pair.
    conf.write_text(conf.read_text().replace(str(key), str(nginx_dir / "missing.pem")))
    refused = subprocess.run(  # noqa: S603
        nginx_command(nginx_dir, conf, "-t"), capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0 and "missing.pem" in refused.stderr


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


# On loopback nginx reaches the nodes from 127.0.0.1: that is the compose network here. Players
# connect to nginx from other loopback addresses, outside it, as real players come from outside.
PROXY_NETWORK_ON_LOOPBACK = "127.0.0.1/32"
ALICE, BOB = "127.0.0.2", "127.0.0.3"
# Small budgets, so a test spends them: signups per address an hour, new connections a minute.
SIGNUPS_PER_ADDRESS, CONNECTIONS_PER_ADDRESS = 3, 3


def trusted_proxies_on_loopback() -> str:
    """The nodes' TRUSTED_PROXIES from the compose file, its network moved to loopback."""
    compose = compose_config()
    (pool,) = compose["networks"]["default"]["ipam"]["config"]
    trusted = compose["services"][node_services(compose)[0]]["environment"]["TRUSTED_PROXIES"]
    entries = [entry.strip() for entry in trusted.split(",")]
    return ",".join(PROXY_NETWORK_ON_LOOPBACK if e == pool["subnet"] else e for e in entries)


@contextlib.asynccontextmanager
async def running_nodes(
    service_urls: tuple[str, str], tmp_path: Path, **env: Any
) -> AsyncIterator[list[ServerNode]]:
    nodes = [ServerNode(*service_urls, tmp_path, **env) for _ in range(2)]
    try:
        for node in nodes:
            await node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
async def cluster(
    service_urls: tuple[str, str],
    tmp_path: Path,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
) -> AsyncIterator[list[ServerNode]]:
    async with running_nodes(service_urls, tmp_path) as nodes:
        yield nodes


@pytest.fixture
async def compose_cluster(
    service_urls: tuple[str, str],
    tmp_path: Path,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
) -> AsyncIterator[list[ServerNode]]:
    """Two nodes configured as deploy/docker-compose.yml configures them (TRUSTED_PROXIES), with
    budgets small enough to spend."""
    async with running_nodes(
        service_urls,
        tmp_path,
        trusted_proxies=trusted_proxies_on_loopback(),
        rate_limit_signup_per_ip=f"{SIGNUPS_PER_ADDRESS}/3600",
        rate_limit_connections_per_ip=f"{CONNECTIONS_PER_ADDRESS}/60",
    ) as nodes:
        yield nodes


@contextlib.asynccontextmanager
async def client_from(address: str, **connector: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose connections leave from `address` (any 127.x address is loopback)."""
    tcp = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True, **connector)
    async with aiohttp.ClientSession(connector=tcp) as session:
        yield session


async def signup(
    session: aiohttp.ClientSession, url: str, forwarded_for: str | None = None
) -> tuple[int, Any]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    body = {"username": unique_name("budget"), "password": "correct horse battery"}
    async with session.post(url + "/auth/signup", json=body, headers=headers) as response:
        return response.status, await response.json()


async def handshake(
    session: aiohttp.ClientSession, url: str, forwarded_for: str | None = None
) -> int:
    """A new Engine.IO (long-polling) connection: the per-address connection budget pays."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    params = {"EIO": "4", "transport": "polling"}
    async with session.get(url + "/socket.io/", params=params, headers=headers) as response:
        await response.read()
        return response.status


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


@needs_nginx
@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_players_behind_nginx_have_their_own_budgets_and_a_header_buys_none(
    compose_cluster: list[ServerNode], proxy: Any, http: aiohttp.ClientSession
) -> None:
    url = proxy([node.port for node in compose_cluster])
    await wait_until_ready(http, url)
    budget = SIGNUPS_PER_ADDRESS
    async with (
        client_from(ALICE) as alice,
        client_from(BOB) as bob,
        client_from("127.0.0.1") as inside,
    ):
        # Alice spends her signups; then she is refused, whatever address she claims.
        assert [(await signup(alice, url))[0] for _ in range(budget)] == [201] * budget
        status, body = await signup(alice, url)
        assert status == 429 and body["error"]["code"] == "RATE_LIMITED", body
        assert 0 < body["error"]["retryAfterMs"] <= 3600 * 1000
        for spoofed in ("198.51.100.7", "198.51.100.7, 203.0.113.9", BOB, "not an address"):
            assert (await signup(alice, url, spoofed))[0] == 429, spoofed

        # Bob's budget is his own: Alice's signups did not spend it. Claiming Alice's address
        # neither spends hers nor spares his.
        bob_got = [(await signup(bob, url, ALICE))[0]] + [
            (await signup(bob, url))[0] for _ in range(budget)
        ]
        assert bob_got == [201] * budget + [429]

        # A client inside the proxy's network (on Docker, players whose connection the userland
        # proxy forwards arrive from the network's gateway) cannot buy budgets with the header:
        # nginx replaces it, so a fresh address per request still counts against one budget.
        inside_got = [(await signup(inside, url, f"203.0.113.{n}"))[0] for n in range(budget + 2)]
        assert inside_got == [201] * budget + [429, 429]

        # New connections: Alice's are counted apart from Bob's, and a header does not help.
        connections = CONNECTIONS_PER_ADDRESS
        assert [await handshake(alice, url) for _ in range(connections)] == [200] * connections
        assert await handshake(alice, url) == 429
        assert await handshake(alice, url, "198.51.100.8") == 429
        assert await handshake(bob, url, ALICE) == 200
        assert await handshake(bob, url) == 200


@needs_nginx
@needs_openssl
@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_players_reach_the_nodes_over_tls_and_plain_http_is_redirected(
    compose_cluster: list[ServerNode], proxy: Any, nginx_dir: Path, http: aiohttp.ClientSession
) -> None:
    cert, key = self_signed_certificate(nginx_dir / "tls")
    tls_port = free_port()
    plain = proxy(
        [node.port for node in compose_cluster],
        source=NGINX_TLS_TEMPLATE,
        tls_port=tls_port,
        variables={"TLS_CERT": str(cert), "TLS_KEY": str(key)},
    )
    url = f"https://127.0.0.1:{tls_port}"
    trust = ssl.create_default_context(cafile=str(cert))
    async with client_from(ALICE, ssl=trust) as alice:
        await wait_until_ready(alice, url)
        async with alice.get(plain + "/play", allow_redirects=False) as response:
            assert response.status == 301
            assert response.headers["Location"] == "https://127.0.0.1/play"
        async with alice.get(url + "/healthz") as response:
            assert response.status == 200
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")

        # REST and a websocket over TLS; the per-address budget still follows the player.
        player = await Player(url, alice).signup()
        await player.connect()
        await player.next("session")
        assert (await player.ok("wallet:get"))["balance"] == 1000
        await player.close()
        statuses = [(await signup(alice, url))[0] for _ in range(SIGNUPS_PER_ADDRESS)]
        assert statuses == [201] * (SIGNUPS_PER_ADDRESS - 1) + [429]
    async with client_from(BOB, ssl=trust) as bob:
        assert (await signup(bob, url, ALICE))[0] == 201
