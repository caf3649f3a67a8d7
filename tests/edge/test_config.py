"""The rendered Envoy config: valid for Envoy 1.40, YAML faithful to the data, streaming
routes without timeouts, the transcoder off on the WebSocket route."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import descriptor_pb2

from nexxus.core.config.settings import Settings
from nexxus.devserver.envoy_config import (
    DEFAULT_DESCRIPTOR,
    envoy_config_for,
    render_yaml,
    write_envoy_config,
)
from nexxus.devserver.servers import envoy_binary

pytestmark = pytest.mark.edge


def _settings() -> Settings:
    s = Settings()
    s.envoy.port = 18080
    s.envoy.admin_port = 0
    s.api.port = 15051
    s.transport.grpc_port = 15052
    s.transport.ws_port = 18765
    s.transport.sse_port = 18766
    s.envoy.cors_allow_origins = ["http://a.example", "http://b.example"]
    return s


def _routes(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return {r["name"]: r for r in hcm["route_config"]["virtual_hosts"][0]["routes"]}


def test_rendered_config_validates(tmp_path: Path) -> None:
    path = write_envoy_config(
        tmp_path / "envoy.yaml", envoy_config_for(_settings(), descriptor_path=DEFAULT_DESCRIPTOR)
    )
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_validation_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a transcoder naming an unknown service is refused."""
    config = envoy_config_for(_settings())
    text = render_yaml(config).replace('"nexxus.v1.UserService"', '"nexxus.v1.NoSuchService"')
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "NoSuchService" in result.stdout + result.stderr


def test_yaml_is_the_data() -> None:
    config = envoy_config_for(_settings())
    assert yaml.safe_load(render_yaml(config)) == config


def test_streaming_routes_have_no_timeout_and_ws_skips_the_transcoder() -> None:
    routes = _routes(envoy_config_for(_settings()))
    assert list(routes) == ["websocket", "sse", "events", "inspect", "inspect_grpc", "api"]
    ws = routes["websocket"]
    assert ws["route"]["timeout"] == "0s"
    assert ws["route"]["upgrade_configs"] == [{"upgrade_type": "websocket", "enabled": True}]
    assert ws["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]["disabled"] is True
    sse = routes["sse"]
    assert sse["route"] == {"cluster": "transport_sse", "timeout": "0s", "idle_timeout": "0s"}
    assert sse["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]["disabled"] is True
    assert routes["events"]["match"] == {"prefix": "/nexxus.v1.EventService/"}
    assert routes["events"]["route"]["timeout"] == "0s"
    assert routes["events"]["route"]["cluster"] == "transport_grpc"
    assert routes["api"]["route"]["cluster"] == "api"
    # The operator's event inspector: a long stream of the api, one JSON object per line over REST.
    inspect = routes["inspect"]
    assert inspect["route"] == {"cluster": "api", "timeout": "0s", "idle_timeout": "0s"}
    transcoder = inspect["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]
    assert transcoder["print_options"]["stream_newline_delimited"] is True
    assert routes["inspect_grpc"]["match"] == {"path": "/nexxus.v1.AdminService/InspectEvents"}
    assert routes["inspect_grpc"]["route"]["timeout"] == "0s"


def test_cors_origins_come_from_settings() -> None:
    config = envoy_config_for(_settings())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    policy = hcm["route_config"]["virtual_hosts"][0]["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert policy["allow_origin_string_match"] == [
        {"exact": "http://a.example"},
        {"exact": "http://b.example"},
    ]


def test_error_detail_types_are_in_the_descriptor() -> None:
    """scripts/generate.py puts google.rpc.Status in, so REST errors have JSON bodies."""
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(DEFAULT_DESCRIPTOR.read_bytes())
    messages = {f"{f.package}.{m.name}" for f in fds.file for m in f.message_type}
    assert {"google.rpc.Status", "google.rpc.ErrorInfo", "nexxus.v1.GetMeRequest"} <= messages
