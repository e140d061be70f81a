"""The configured calendar reaches the traffic detector; old traffic states load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from detectors.baseline import SeasonalBaseline
from detectors.config import DetectorsConfig
from detectors.traffic import TrafficState


@pytest.mark.parametrize("spec", ["none", "FR", "FR-57", "FR-6AE+school-B", "FR+school-C", "DE"])
def test_calendars_are_configurable(spec):
    assert DetectorsConfig(holiday_calendar=spec).holiday_calendar == spec


def test_a_bad_calendar_is_refused_with_the_reason():
    with pytest.raises(ValidationError, match="no school zone 'D'"):
        DetectorsConfig(holiday_calendar="FR+school-D")


def test_a_traffic_state_saved_with_four_day_types_loads():
    new = TrafficState()
    new.buf[:8] = b"\x01" * 8  # a learned slot of day type 0
    new.buf[-28:] = b"\x02" * 28  # the fallback
    old = bytes(new.buf[:SeasonalBaseline.SIZE_4_DAY_TYPES]) + bytes(new.buf[-28:])
    assert TrafficState.from_bytes(old).buf == new.buf
