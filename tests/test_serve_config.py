"""What ganserve writes into TorchServe's config (no server): safe defaults that other tests rely on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ganserve.commands import serve as serve_command
from ganserve.serving.config import KEY_LIFETIME_MIN, LOG4J2_XML, ServerConfig
from ganserve.serving.kserve import kserve_properties
from ganserve.serving.store import ArchiveOptions


def test_metrics_stay_on_loopback_whatever_the_host(tmp_path):
    props = ServerConfig(model_store=tmp_path, host="0.0.0.0", metrics_port=9182).properties()
    assert props["inference_address"].startswith("http://0.0.0.0:")
    assert props["metrics_address"] == "http://127.0.0.1:9182"  # TorchServe's metrics API has no authentication


def test_keys_outlive_the_server_and_bodies_reach_ganserve_raw(tmp_path):
    props = ServerConfig(model_store=tmp_path).properties()
    assert float(props["token_expiration_min"]) == KEY_LIFETIME_MIN >= 5 * 365 * 24 * 60
    assert props["decode_input_request"] == "false" and props["disable_token_authorization"] == "false"
    assert props["enable_model_api"] == "false"
    assert kserve_properties({"m": ArchiveOptions()})["decode_input_request"] == "false"


def test_the_log_config_keeps_what_failure_detection_reads(tmp_path):
    root = ET.fromstring(LOG4J2_XML)
    levels = {lg.get("name"): lg.get("level") for lg in root.iter("Logger")}
    assert levels["MODEL_LOG"] == "info"  # the workers' tracebacks: how a load failure is named
    assert levels["org.pytorch.serve"] == "info"  # "Load model failed" is a warning, start-up is info
    assert levels["ACCESS_LOG"] == "info"
    props = ServerConfig(model_store=tmp_path, log_config=tmp_path / "log4j2.xml").properties()
    assert f"-Dlog4j.configurationFile={tmp_path / 'log4j2.xml'}" in props["vmargs"]


@pytest.mark.parametrize("available, expected", [(None, 2), (64_000, 2), (2_000, 1), (500, 1)])
def test_two_workers_where_memory_allows(monkeypatch, tiny_path, available, expected):
    monkeypatch.setattr(serve_command, "available_mb", lambda: available)
    assert serve_command.default_workers({"tiny": tiny_path}) == expected


def test_a_picked_port_is_never_one_already_given_to_the_server(monkeypatch):
    """The OS may hand out a port again until it is bound (seen in CI: gRPC got the metrics port)."""
    from ganserve.serving import config

    handed_out = iter([41000, 41000, 41001, 41000, 41002])

    class FakeSocket:
        def bind(self, address):
            self.port = next(handed_out)

        def getsockname(self):
            return ("127.0.0.1", self.port)

        def close(self):
            pass

    monkeypatch.setattr(config.socket, "socket", FakeSocket)
    assert config.free_port() == 41000
    assert config.free_port(exclude=[41000]) == 41001
    assert config.free_port(exclude=[41000, 41001]) == 41002


def test_no_api_may_fetch_an_archive_from_any_url(tmp_path):
    """The pattern TorchServe matches URLs against (Java regex, full match) accepts none, here and for KServe."""
    import re

    for props in (
        ServerConfig(model_store=tmp_path / "store").properties(),
        kserve_properties({"m": ArchiveOptions()}),
    ):
        pattern = re.compile(props["allowed_urls"])
        for url in ("http://127.0.0.1:1/x.war", "https://example.org/m.mar", "file:///etc/passwd", "x.war", ""):
            assert not pattern.fullmatch(url)
        assert props["enable_model_api"] == "false"
    local = ServerConfig(model_store=tmp_path / "store").properties()
    assert local["workflow_store"] == str((tmp_path / "workflow-store").resolve()) != local["model_store"]
