"""docker-compose.yml, Dockerfile and the compose Envoy config, checked without a Docker engine:
every service is buildable or pulled, every NEXXUS_* variable is a real, valid setting,
every address one service uses points at a service of the file that exposes that port,
and the Envoy config is the generated one and passes `envoy --mode validate`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from nexxus.core.config.loader import load_settings
from nexxus.core.config.settings import Settings
from nexxus.core.limits import limits_of
from nexxus.devserver.envoy_config import compose_envoy_config, render_yaml
from nexxus.devserver.servers import envoy_binary, nats_server_binary
from nexxus.runtime import SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENVOY_COMPOSE = ROOT / "envoy" / "envoy.compose.yaml"

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?(?P<op>[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: str, environ: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} with `environ` (default: an empty environment; a bare
    ${VAR} is refused: no silent "")."""

    def sub(m: re.Match[str]) -> str:
        if m["op"] != "-":
            raise AssertionError(f"{m[0]} needs a default for a plain `docker compose up`")
        return (environ or {}).get(m["name"]) or m["arg"]

    return _INTERPOLATION.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = compose["services"]
    return out


def _env(service: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): _interpolate(str(v), environ) for k, v in env.items()}


def _exposed(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for mapping in service.get("ports", []):
        ports.add(int(str(mapping).split(":")[-1].split("/")[0]))
    return ports


def _settings_of(services: dict[str, dict[str, Any]], name: str) -> Settings:
    return load_settings(env=_env(services[name]), providers=[])


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    assert set(SERVICES) <= set(services)
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
    for name in SERVICES:
        assert services[name]["build"] == "."
        assert services[name]["command"] == [name]
    assert services["envoy"]["image"].startswith("envoyproxy/envoy:v1.40")
    assert {"nats", "redis", "postgres", "elasticsearch"} <= set(services)


def test_dockerfile_builds_the_one_service_image() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "pip install '.[postgres,elasticsearch,opensearch]'" in text
    assert 'ENTRYPOINT ["nexxus", "serve"]' in text
    for src in re.findall(r"^COPY (?!pyproject)(\S+) ", text, re.M):
        assert (ROOT / src).exists(), f"COPY {src}: missing"


def test_every_nexxus_variable_is_a_valid_setting(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        env = _env(service)
        if not any(k.startswith("NEXXUS_") for k in env):
            continue
        settings = load_settings(env=env, providers=[])  # raises ConfigError naming any bad key
        assert settings.database.adapter == "postgres", name
        assert settings.operator_key, f"{name}: the operator key is shared by all services"
        assert settings.auth.signing_key, f"{name}: the signing key is shared by all services"
    assert _settings_of(services, "api").api.host == "0.0.0.0"
    transport = _settings_of(services, "transport").transport
    assert transport.host == "0.0.0.0"
    assert {transport.grpc_port, transport.ws_port, transport.sse_port} <= _exposed(services["transport"])
    assert _settings_of(services, "api").api.port in _exposed(services["api"])


def test_every_service_is_healthchecked_on_its_readiness(services: dict[str, dict[str, Any]]) -> None:
    """The healthcheck of each Nexxus service probes /readyz on its role's observability
    port (docs/observability.md), which the service binds on every interface and exposes."""
    for name in SERVICES:
        obs = _settings_of(services, name).observability
        port = obs.port_of(name)
        assert obs.enabled, name
        assert obs.host == "0.0.0.0", name
        assert port in _exposed(services[name]), f"{name}: observability port {port} is not exposed"
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in probe, f"{name}: healthcheck does not probe /readyz"
    ports = [_settings_of(services, name).observability.port_of(name) for name in SERVICES]
    assert len(set(ports)) == len(SERVICES)


def test_variables_outside_settings_are_refused() -> None:
    """The check above can fail: a misspelt key is a ConfigError."""
    from nexxus.core.config.errors import ConfigError

    with pytest.raises(ConfigError, match="nats"):
        load_settings(env={"NEXXUS_BUS__NATS__SERVER": "nats://nats:4222"}, providers=[])


def _targets(settings: Settings) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    for url in settings.bus.nats.servers:
        parts = urlsplit(url)
        out.append(("bus.nats.servers", parts.hostname or "", parts.port or 4222))
    redis = urlsplit(settings.store.redis.url)
    out.append(("store.redis.url", redis.hostname or "", redis.port or 6379))
    if settings.database.adapter == "postgres":
        dsn = urlsplit(settings.database.postgres.dsn)
        out.append(("database.postgres.dsn", dsn.hostname or "", dsn.port or 5432))
    for engine in ("elasticsearch", "opensearch"):
        for host in getattr(settings.database, engine).hosts:
            parts = urlsplit(host)
            out.append((f"database.{engine}.hosts", parts.hostname or "", parts.port or 9200))
    return out


def test_every_address_points_to_a_service_exposing_that_port(services: dict[str, dict[str, Any]]) -> None:
    for name in SERVICES:
        for key, host, port in _targets(_settings_of(services, name)):
            assert host in services, f"{name}: {key} → {host!r} is not a compose service"
            assert port in _exposed(services[host]), f"{name}: {key} → {host}:{port} is not exposed"
    clusters = compose_envoy_config()["static_resources"]["clusters"]
    for cluster in clusters:
        for group in cluster["load_assignment"]["endpoints"]:
            for lb in group["lb_endpoints"]:
                addr = lb["endpoint"]["address"]["socket_address"]
                host, port = addr["address"], addr["port_value"]
                assert host in services, f"envoy cluster {cluster['name']} → {host!r}"
                assert port in _exposed(services[host]), f"envoy cluster {cluster['name']} → {host}:{port}"


def test_service_dependencies_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        for dep in deps:
            assert dep in services, f"{name} depends on unknown {dep}"
            if isinstance(deps, dict) and deps[dep].get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health, which has no check"


def test_envoy_compose_config_is_the_generated_one_and_mounted(services: dict[str, dict[str, Any]]) -> None:
    assert ENVOY_COMPOSE.read_text() == render_yaml(compose_envoy_config()), (
        "stale: python -m nexxus.devserver.envoy_config --compose > envoy/envoy.compose.yaml"
    )
    volumes = services["envoy"]["volumes"]
    assert "./envoy/envoy.compose.yaml:/etc/envoy/envoy.yaml:ro" in volumes
    assert "./envoy/nexxus.binpb:/etc/envoy/nexxus.binpb:ro" in volumes
    assert "/etc/envoy/envoy.yaml" in services["envoy"]["command"]
    listener = compose_envoy_config()["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert f"8080:{listener['port_value']}" in services["envoy"]["ports"]


def test_envoy_compose_config_validates(tmp_path: Path) -> None:
    local = ENVOY_COMPOSE.read_text().replace("/etc/envoy/nexxus.binpb", str(ROOT / "envoy" / "nexxus.binpb"))
    config = tmp_path / "envoy.yaml"
    config.write_text(local)
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(config), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_search_engine_profiles(services: dict[str, dict[str, Any]], engine: str) -> None:
    """`NEXXUS_DATABASE_ADAPTER=<engine> docker compose --profile <engine> up`: every service
    uses the engine, waits for it, and keeps identities in it (one store for all processes)."""
    from nexxus.adapters.registry import build_database, build_identity_store

    server = services[engine]
    assert server.get("profiles") == [engine]
    assert 9200 in _exposed(server)
    assert "healthcheck" in server
    env = dict(server.get("environment") or {})
    assert env.get("discovery.type") == "single-node"
    for name in SERVICES:
        settings = load_settings(env=_env(services[name], {"NEXXUS_DATABASE_ADAPTER": engine}), providers=[])
        assert settings.database.adapter == engine, name
        host = urlsplit(getattr(settings.database, engine).hosts[0])
        assert (host.hostname, host.port) == (engine, 9200), name
        dep = services[name]["depends_on"][engine]
        assert dep == {"condition": "service_healthy", "required": False}, name
        db, identity = build_database(settings), build_identity_store(settings)
        # Not the per-process SQLite fallback: the identities live in the engine.
        assert type(identity) is type(db), name
        assert type(identity).__module__ == f"nexxus.adapters.database.{engine}", name


def test_elasticsearch_image_matches_the_client_major() -> None:
    """The `elasticsearch` client talks only to a server of its own major version."""
    import importlib.metadata

    image = yaml.safe_load(COMPOSE.read_text())["services"]["elasticsearch"]["image"]
    server_major = image.rsplit(":", 1)[1].split(".")[0]
    client_major = importlib.metadata.version("elasticsearch").split(".")[0]
    assert server_major == client_major, (image, client_major)


def test_nats_takes_the_largest_message_of_every_service(services: dict[str, dict[str, Any]]) -> None:
    """nats-server's max_payload (deploy/nats-server.conf, mounted by the compose file) is at
    or above what the services' limits send, and the file is valid for nats-server."""
    conf = ROOT / "deploy" / "nats-server.conf"
    mounted = [
        v for v in services["nats"].get("volumes", []) if str(v).startswith("./deploy/nats-server.conf:")
    ]
    assert mounted, "the nats service does not mount deploy/nats-server.conf"
    target = str(mounted[0]).split(":")[1]
    assert services["nats"]["command"][:2] == ["--config", target]
    found = re.search(r"^max_payload:\s*(\d+)\s*$", conf.read_text(), re.MULTILINE)
    assert found, "deploy/nats-server.conf sets no max_payload"
    for name in SERVICES:
        settings = _settings_of(services, name)
        assert int(found[1]) >= limits_of(settings).nats_max_payload, name
    checked = subprocess.run(
        [str(nats_server_binary()), "-c", str(conf), "-t"], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
