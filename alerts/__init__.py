"""Alerting for tocsin, modelled on Prometheus Alertmanager; pure except notify/.

Stages, one module each: ``model`` (the alert and its fingerprint),
``lifecycle`` (firing / resolved with hysteresis, in event time), ``config``
(typed, validated YAML), ``dispatch`` (route tree), ``group`` (aggregation
groups), ``inhibit`` and ``silence`` (both ``mutes(labels)``),
``timeinterval`` (mute / active time intervals), and ``notify`` (the
pipeline of receivers: console, Slack, Slack incoming webhook, webhook,
Alertmanager; ``notify.notifier.AlertNotifier`` wires the stages together).
"""
