"""JSON Schemas (draft 2020-12) of the two input events, made from the decoder's own definitions.

msgspec writes the schema of each wire Struct of :mod:`detectors.events`
(types, required fields, the ranges and lengths of its ``msgspec.Meta``
constraints); the two rules the decoder checks in Python are filled in from
the constants it reads: ``ts`` (:data:`~detectors.timeutil.EVENT_TS_PATTERN`,
``EVENT_TS_MIN``/``EVENT_TS_MAX``) and the SMART map (ids 1-255, raw values
0 to ``MAX_COUNTER``). What a schema cannot say: the 64 KiB size limit and
that an integer field refuses ``200.0`` (JSON Schema counts it an integer).

Regenerate the committed files after changing a range::

    python -m detectors.eventschema schemas        # write
    python -m detectors.eventschema --check schemas  # exit 1 if they differ
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from . import events
from .timeutil import EVENT_TS_MAX, EVENT_TS_MIN, EVENT_TS_PATTERN

__all__ = ["FILES", "input_schemas", "render", "main"]

#: File name of each schema in schemas/.
FILES = {"request": "request-event.json", "disk-health": "disk-health-event.json"}

_TS = {
    "description": (
        "Event time: an RFC 3339 string with a time zone offset, year 2000-2099 as written, "
        "or Unix epoch seconds from 2000-01-01T00:00:00Z to before 2100-01-01T00:00:00Z."
    ),
    "anyOf": [
        {"type": "string", "pattern": EVENT_TS_PATTERN},
        {"type": "number", "minimum": int(EVENT_TS_MIN), "exclusiveMaximum": int(EVENT_TS_MAX)},
    ],
}

_SMART = {
    "type": "object",
    "propertyNames": {"pattern": events.SMART_ID_PATTERN},
    "additionalProperties": {"type": "number", "minimum": 0, "maximum": events.MAX_COUNTER},
}

_ABOUT = {
    "request": (
        "urn:tocsin:schema:request-event",
        "tocsin request event (topic requests)",
        "One finished HTTP request. Fields not listed are ignored. A message over "
        f"{events.MAX_EVENT_BYTES // 1024} KiB, or outside these ranges, is dead-lettered with the reason.",
        events._RequestWire,
    ),
    "disk-health": (
        "urn:tocsin:schema:disk-health-event",
        "tocsin disk-health event (topic disk-health)",
        "One reading of one drive, Backblaze-style. Fields not listed are ignored. A message over "
        f"{events.MAX_EVENT_BYTES // 1024} KiB, or outside these ranges, is dead-lettered with the reason.",
        events._DiskWire,
    ),
}


def _schema(kind: str) -> dict[str, Any]:
    sid, title, description, wire = _ABOUT[kind]
    gen = msgspec.json.schema(wire)
    (body,) = gen["$defs"].values()  # one Struct, no nested ones
    props = dict(body["properties"])
    props["ts"] = _TS
    if "smart" in props:
        props["smart"] = {**props["smart"], **_SMART}
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": sid,
        "title": title,
        "description": description,
        "type": "object",
        "required": body["required"],
        "properties": props,
    }
    return out


def input_schemas() -> dict[str, dict[str, Any]]:
    """The schema of each input event, by file name (see :data:`FILES`)."""
    return {FILES[kind]: _schema(kind) for kind in FILES}


def render(schema: dict[str, Any]) -> str:
    """The text of a schema file (stable: the committed files are compared with it)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detectors.eventschema", description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="schemas", help="folder of the schema files (default: schemas)")
    ap.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 if any differs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    stale = []
    for name, schema in input_schemas().items():
        path = out / name
        text = render(schema)
        if args.check:
            try:
                same = path.read_text(encoding="utf-8") == text
            except OSError:
                same = False
            if not same:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python -m detectors.eventschema {out}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
