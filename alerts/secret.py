"""Secrets (tokens, passwords) that never reach a log line, a repr or an error message.

>>> token = Secret("xoxb-123")
>>> token
**********
>>> f"token={token}"
'token=**********'
>>> token.get()
'xoxb-123'
>>> redact("auth failed for xoxb-123", [token])
'auth failed for **********'
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["Secret", "redact", "MASK"]

MASK = "**********"


class Secret:
    """A string that prints as ``**********``; ``.get()`` gives the value.

    Not a ``str`` subclass on purpose: concatenation, ``%`` and ``json.dumps``
    fail loudly instead of leaking the value.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret):
        if isinstance(value, Secret):
            value = value.get()
        if not isinstance(value, str):
            raise TypeError(f"Secret takes a str, got {type(value).__name__}")
        self._value = value

    def get(self) -> str:
        """The secret value itself: pass it only to the code that needs it."""
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """Let pydantic settings fields be typed ``Secret``: a str in, a Secret out, masked out."""
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.union_schema(
                [core_schema.is_instance_schema(cls), core_schema.str_schema()]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: MASK, when_used="always"
            ),
        )


def redact(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """Replace every occurrence of each secret (also URL-encoded) in ``text`` by ``**********``."""
    values: set[str] = set()
    for s in secrets:
        if s is None:
            continue
        v = s.get() if isinstance(s, Secret) else str(s)
        if v:
            values.update((v, v.strip(), quote(v, safe=""), quote_plus(v)))
    values.discard("")
    for v in sorted(values, key=len, reverse=True):
        text = text.replace(v, MASK)
    return text
