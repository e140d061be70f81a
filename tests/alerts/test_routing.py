"""Route tree from inline YAML, table-driven; config files good and bad."""

from pathlib import Path

import pytest

from alerts.config import AlertingConfig
from alerts.dispatch import Router
from alerts.model import Alert
from detectors.configfile import load_model_file, load_model_text
from detectors.errors import ConfigError
from stream.settings import Config

ROUTES = """
receivers:
  - {name: default, console: {}}
  - {name: security, console: {}}
  - {name: storage, console: {}}
  - {name: ent-team, console: {}}
route:
  receiver: default
  routes:
    - matchers: ['cause="suspected_attack"']
      receiver: security
      continue: true
    - matchers: ['cause="disk_failure"', 'host=~"ent-.*"']
      receiver: storage
    - matchers: ['service=~"ent-.*"', 'severity!="warning"']
      receiver: ent-team
"""


def alert(cause="unknown", service=None, host=None, severity="critical"):
    return Alert({"service": service, "host": host, "disk": None}, "firing", severity, "t", cause, 0.5, 0.0)


@pytest.mark.parametrize(
    ("a", "expected"),
    [
        (alert("suspected_attack", "ent-idf"), ["security", "ent-team"]),
        (alert("suspected_attack", "ma-classe"), ["security"]),  # a matched child replaces the parent
        (alert("disk_failure", host="ent-aura-web-2"), ["storage"]),
        (alert("disk_failure", host="db-1"), ["default"]),
        (alert("capacity_saturation", "ent-idf"), ["ent-team"]),
        (alert("capacity_saturation", "ent-idf", severity="warning"), ["default"]),
        (alert("unknown", "other"), ["default"]),
    ],
)
def test_routes(a, expected):
    router = Router(load_model_text(ROUTES, AlertingConfig).route)
    assert router.match(a) == expected


CONFIGS = Path(__file__).parent / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "good").glob("*.yaml")), ids=lambda p: p.name)
def test_good_configs_load(path):
    load_model_file(path, Config)


@pytest.mark.parametrize("path", sorted((CONFIGS / "bad").glob("*.yaml")), ids=lambda p: p.name)
def test_bad_configs_name_file_line_and_field(path):
    # Each bad file says on its first line what the error must contain: "# expect: <line>: <field>"
    expect = path.read_text().splitlines()[0].removeprefix("# expect:").strip()
    line, field = (x.strip() for x in expect.split(":", 1))
    with pytest.raises(ConfigError) as exc:
        load_model_file(path, Config)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    assert field in msg, msg
