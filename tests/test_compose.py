"""docker-compose.yml: every setting Kafka parses at start, and the commands the services run.

Kafka formats its storage from ``CLUSTER_ID`` and refuses anything but a
16-byte UUID in URL-safe base64 (22 characters); the listeners must name
protocols, ports and the controller consistently, or the broker exits and
every service that waits on its health check waits for ever. These checks
read the file as Kafka would; ``docker compose config`` runs too when the
Compose plugin is there.
"""

from __future__ import annotations

import base64
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stream.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def kafka_env(compose) -> dict[str, str]:
    return {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}


def _kafka_uuid(text: str) -> bytes:
    """Kafka's ``Uuid.fromString``: URL-safe base64 of exactly 16 bytes, not a reserved id."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", text):
        raise ValueError(f"{text!r} is not 22 URL-safe base64 characters")
    raw = base64.urlsafe_b64decode(text + "==")
    if len(raw) != 16:
        raise ValueError(f"{text!r} decodes to {len(raw)} bytes, not 16")
    if int.from_bytes(raw) in (0, 1):  # Uuid.ZERO_UUID and Uuid.METADATA_TOPIC_ID are reserved
        raise ValueError(f"{text!r} is a reserved id")
    return raw


def test_uuid_check_refuses_what_kafka_refuses():
    with pytest.raises(ValueError, match="22 URL-safe"):
        _kafka_uuid("dG9jc2luLWxvY2FsLWthZmthMQ")  # the 19-byte id compose once had
    with pytest.raises(ValueError, match="reserved"):
        _kafka_uuid("AAAAAAAAAAAAAAAAAAAAAA")
    assert len(_kafka_uuid("jFDz9jBDWbK3bmmnfcacqQ")) == 16


def test_cluster_id_is_a_kafka_uuid(kafka_env):
    _kafka_uuid(kafka_env["CLUSTER_ID"])


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for item in value.split(","):
        m = re.fullmatch(r"([A-Z_]+)://([^:]*):(\d+)", item.strip())
        assert m, f"bad listener {item!r}"
        assert m.group(1) not in out, f"listener {m.group(1)} twice"
        out[m.group(1)] = (m.group(2), int(m.group(3)))
    return out


def test_listeners_are_consistent(compose, kafka_env):
    listeners = _listeners(kafka_env["KAFKA_LISTENERS"])
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    roles = set(kafka_env["KAFKA_PROCESS_ROLES"].split(","))

    assert roles == {"broker", "controller"}
    assert set(listeners) <= set(protocols), "every listener needs a security protocol"
    assert set(protocols.values()) <= {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
    assert len({port for _, port in listeners.values()}) == len(listeners), "two listeners on one port"
    assert controller in listeners
    assert set(advertised) <= set(listeners) - {controller}, "advertise broker listeners only"
    assert kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised

    # The quorum voter is this node, on the controller listener's port.
    node, _, where = kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == kafka_env["KAFKA_NODE_ID"]
    assert int(where.rpartition(":")[2]) == listeners[controller][1]

    # Other containers reach kafka:9092; the host reaches the published port,
    # which must land on the listener that advertises localhost with that port.
    workers = [s for s in compose["services"].values()
               if "TOCSIN_KAFKA_BOOTSTRAP_SERVERS" in (s.get("environment") or {})]
    assert workers
    for s in workers:
        host, _, port = s["environment"]["TOCSIN_KAFKA_BOOTSTRAP_SERVERS"].partition(":")
        assert host == compose["services"]["kafka"]["hostname"]
        assert any(a == (host, int(port)) for a in advertised.values())
    for mapping in compose["services"]["kafka"]["ports"]:
        bind, host_port, container_port = mapping.split(":")
        assert bind == "127.0.0.1"
        [name] = [n for n, (_, p) in listeners.items() if p == int(container_port)]
        assert advertised[name] == ("localhost", int(host_port))


def test_single_node_replication_factors(kafka_env):
    for key, value in kafka_env.items():
        if key.endswith(("_REPLICATION_FACTOR", "_MIN_ISR")):
            assert value == "1", f"{key}={value}: one node holds one replica"


def test_services_commands_exist(compose):
    """Every tocsin command in compose parses with the CLI the image installs."""
    parser = build_parser()
    seen = 0
    for name, service in compose["services"].items():
        command = service.get("command")
        if not service.get("build") or command is None:
            continue
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        assert argv[0] == "tocsin", f"{name}: {argv}"
        args = parser.parse_args(argv[1:])  # SystemExit on an unknown command or option
        assert args.command == argv[1]
        seen += 1
    assert seen >= 2


def test_mounted_files_exist(compose):
    for service in compose["services"].values():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_docker_compose_config():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker command here")
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if plugin.returncode != 0:
        pytest.skip(f"docker has no Compose plugin here ({plugin.stderr.strip().splitlines()[0]})")
    r = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
