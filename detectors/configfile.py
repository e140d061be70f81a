"""Typed YAML configuration with errors that name the file, the line and the field.

>>> from pydantic import BaseModel
>>> class M(BaseModel):
...     window: float = 60.0
>>> load_model_text("window: soon\\n", M, "t.yaml")
Traceback (most recent call last):
...
detectors.errors.ConfigError: t.yaml:1: window: Input should be a valid number, unable to parse string as a number
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError

__all__ = ["load_model_file", "load_model_text", "parse_duration", "parse_scalar"]

M = TypeVar("M", bound=BaseModel)

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$")
_UNIT = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# Alertmanager's (Prometheus') duration syntax: integer parts, largest unit first, e.g. 1h30m, 1w2d.
_AM_DUR = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_AM_UNITS = (31536000, 604800, 86400, 3600, 60, 1, 0.001)


def parse_scalar(v: str) -> bool | int | float:
    """A parameter given as ``key=value`` text (``--params``): true / false, an int, else a float.

    Compiled detectors check their argument types, so ``1`` must stay an int and ``true`` a bool.

    >>> parse_scalar("true"), parse_scalar("3"), parse_scalar("0.5")
    (True, 3, 0.5)
    """
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    try:
        return int(v)
    except ValueError:
        return float(v)


def parse_duration(v: Any) -> float:
    """Seconds from a number or a string like ``30s``, ``5m``, ``1.5h``, ``2d``, or Alertmanager's ``1h30m``.

    One unit may carry decimals (``1.5h``); several units are integers, largest
    first, as Alertmanager and Prometheus write them (``1w2d``, ``1h30m15s``).
    ``y`` is 365 days, as there.

    >>> parse_duration("5m"), parse_duration(90), parse_duration("1.5h"), parse_duration("1h30m")
    (300.0, 90.0, 5400.0, 5400.0)
    >>> parse_duration("1m30s500ms")
    90.5
    """
    if isinstance(v, bool):
        raise ValueError("a duration must be a number of seconds or a string like 5m")
    if isinstance(v, int | float):
        if not math.isfinite(v):
            raise ValueError("a duration must be a finite number of seconds")
        if v < 0:
            raise ValueError("a duration cannot be negative")
        return float(v)
    if isinstance(v, str):
        m = _DUR.match(v)
        if m:
            return float(m.group(1)) * _UNIT[m.group(2)]
        m = _AM_DUR.match(v.strip())
        if m and any(m.groups()):
            return float(sum(int(g) * u for g, u in zip(m.groups(), _AM_UNITS, strict=True) if g))
    raise ValueError(f"{v!r} is not a duration (use a number of seconds or 30s, 5m, 1h30m, 2d)")


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the deepest node of ``loc`` that exists in the YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == part:
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
        if node is None:
            break
    return line


def load_model_text(text: str, model: type[M], filename: str = "<config>") -> M:
    """Parse YAML text into ``model``; raise ConfigError naming file:line: field."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{filename}:{where}: not valid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1: the top level must be a mapping of settings")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic adds union/tag members to loc; keep the ones that exist in the file
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(root, loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{filename}:{line or '?'}: {field}: {msg}{more}") from None


def load_model_file(path: str | Path, model: type[M]) -> M:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the configuration: {exc.strerror}") from None
    return load_model_text(text, model, str(p))
