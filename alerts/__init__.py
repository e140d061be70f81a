"""Alerting for tocsin, modelled on Prometheus Alertmanager; pure except notify/.

Stages, one module each: ``model`` (the alert and its fingerprint),
``lifecycle`` (firing / resolved with hysteresis, in event time), ``config``
(typed, validated YAML), ``dispatch`` (route tree and grouping), ``inhibit``
and ``silence`` (both ``mutes(labels)``), and ``notify`` (the pipeline of
receivers: console, Slack, webhook, Alertmanager).
"""
