"""The README's configuration example is a valid configuration."""

from pathlib import Path

from detectors.configfile import load_model_text
from stream.settings import Config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_example_loads():
    text = README.read_text()
    start = text.index("```yaml\nkafka:") + len("```yaml\n")
    cfg = load_model_text(text[start : text.index("```", start)], Config, "README.md")
    assert cfg.kafka.bootstrap_servers and cfg.alerting.inhibit_rules
