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
"""
