"""Pure detection code for tocsin: no Kafka, no Faust.

Every detector keeps River's two verbs: ``score_one`` scores an observation
*before* it is learned (higher is more anomalous, always in [0, 1]) and
``learn_one`` updates the model. Per-key models (one per service, host or
drive) are small sketches whose state serialises to a few hundred bytes with
``to_bytes`` / ``from_bytes`` (``struct``, never pickle), so the stream layer
can checkpoint them in Faust tables.

Modules
-------
events      decoding and validation of the input events (CONTRACT formats)
timeutil    event-time parsing and formatting
model       the Anomaly record written to the ``anomalies`` topic
univariate  the online univariate scorer behind ``tocsin score``
features    windowed features in event time
latency     LatencySpikeDetector
traffic     TrafficAnomalyDetector
disk        DiskFailureDetector
diagnosis   the suspected cause of a group of anomalies, with evidence

The hot per-event modules are compiled to C by mypyc at install time (see
``setup.py``); :func:`compiled_modules` names those that run compiled.
"""

from __future__ import annotations

import sys


def compiled_modules() -> list[str]:
    """The modules of this package, among those imported, that run as compiled extensions."""
    return sorted(
        name
        for name, mod in list(sys.modules.items())
        if name.startswith(__name__ + ".")
        and "__mypyc" not in name  # mypyc's shared runtime library
        and (getattr(mod, "__file__", None) or "").endswith((".so", ".pyd"))
    )
