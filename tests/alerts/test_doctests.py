"""The alerts package's docstring examples run as tests."""

import doctest
import importlib

import pytest

MODULES = ["alerts.group", "alerts.inhibit", "alerts.silence", "alerts.timeinterval", "alerts.matchers",
           "alerts.secret", "alerts.notify.base", "alerts.notify.console", "alerts.notify.message",
           "alerts.notify.http"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
