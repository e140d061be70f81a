"""The same alert stream routed by tocsin and by Debian's prometheus-alertmanager (0.25).

Both get the equivalent routing config (group_by, a child route, an inhibit
rule) and a webhook receiver on a local aiohttp server; the test asserts
that both notify the same groups with the same alerts, and that the same
alerts are inhibited. Skipped when the binary is not installed (.ci/run
installs it on a best-effort basis).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections import defaultdict

import aiohttp
import pytest
from aiohttp import web

from alerts.config import AlertingConfig
from alerts.matchers import alert_labels
from alerts.model import Alert
from alerts.notify.alertmanager import AlertmanagerReceiver
from alerts.notify.notifier import AlertNotifier
from alerts.notify.webhook import WebhookReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text

AM_BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

pytestmark = pytest.mark.skipif(
    AM_BINARY is None,
    reason="prometheus-alertmanager is not installed (apt-get install -y prometheus-alertmanager)",
)

ROUTING = """
route:
  receiver: hook
  group_by: [service]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 4h
  routes:
    - matchers: ['cause="disk_failure"']
      group_by: [host]
inhibit_rules:
  - source_matchers: ['cause="disk_failure"']
    target_matchers: ['cause=~"unknown|capacity_saturation"']
    equal: [host]
"""

TOCSIN = ROUTING + """
receivers:
  - {name: hook, webhook: {url_env: UNUSED}}
"""


def am_config(port: int) -> str:
    return ROUTING + f"""
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{port}/hook
        send_resolved: true
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hook:
    """A local webhook server recording Alertmanager-format payloads."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> Hook:
        app = web.Application()

        async def hook(request: web.Request) -> web.Response:
            self.payloads.append(await request.json())
            return web.Response(text="ok")

        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def groups(self) -> dict[frozenset, set[tuple[str, str]]]:
        """Group labels -> (tocsin fingerprint, status) of every alert notified in that group."""
        out: dict[frozenset, set[tuple[str, str]]] = defaultdict(set)
        for p in self.payloads:
            key = frozenset(p["groupLabels"].items())
            for a in p["alerts"]:
                out[key].add((a["annotations"]["fingerprint"], a["status"]))
        return dict(out)


@pytest.fixture
async def alertmanager(tmp_path, no_proxy_env):
    hook = await Hook().start()
    port = free_port()
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(am_config(hook.port))
    log = open(tmp_path / "alertmanager.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(  # noqa: S603
        [AM_BINARY, f"--config.file={cfg}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with s.get(base + "/-/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("alertmanager did not start: " + (tmp_path / "alertmanager.log").read_text()[-2000:])
                await asyncio.sleep(0.1)
        yield base, hook
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        await hook.stop()


def alert(cause: str, service: str | None, host: str | None, disk: str | None = None, *, at: float) -> Alert:
    return Alert({"service": service, "host": host, "disk": disk}, "firing",
                 "critical" if cause == "disk_failure" else "warning", f"{cause} on {service or host}", cause, 0.8, at)


async def wait_for(cond, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def test_tocsin_and_alertmanager_make_the_same_groups_and_inhibit_the_same_alerts(alertmanager):
    base, am_hook = alertmanager
    tocsin_hook = await Hook().start()
    cfg = load_model_text(TOCSIN, AlertingConfig)
    webhook = WebhookReceiver(Secret(tocsin_hook.url), name="hook")
    notifier = AlertNotifier(cfg, {"hook": webhook}, {})
    pusher = AlertmanagerReceiver(base, name="am")

    t0 = time.time()
    disk = alert("disk_failure", None, "web-3", "Z1", at=t0)
    stream = [
        disk,
        alert("unknown", "ent-a", "web-3", at=t0),  # inhibited by the disk
        alert("capacity_saturation", "ent-b", "web-4", at=t0),  # other host
        alert("suspected_attack", "ent-c", "web-3", at=t0),  # not a target of the rule
        alert("capacity_saturation", "ent-d", "web-3", at=t0),  # inhibited
        alert("unknown", "ent-b", "web-5", at=t0),  # other host, same group as ent-b
    ]
    try:
        # Phase 1: everything fires.
        for a in stream:
            await pusher.notify(a, None)
            await notifier.receive(a, t0)
        for dt in (0.5, 1.0, 1.5):
            await notifier.flush(t0 + dt)
        await wait_for(lambda: len(am_hook.groups()) >= 3)
        await asyncio.sleep(1.0)  # let any further group arrive

        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/api/v2/alerts", params={"inhibited": "true", "active": "false",
                                                               "silenced": "false", "unprocessed": "false"}) as r:
                inhibited_am = {a["annotations"]["fingerprint"] for a in await r.json() if a["status"]["inhibitedBy"]}
        inhibited_tocsin = {a.fingerprint for a in stream if notifier.inhibitor.mutes(alert_labels(a))}
        assert inhibited_am == inhibited_tocsin == {stream[1].fingerprint, stream[4].fingerprint}
        assert am_hook.groups() == tocsin_hook.groups()
        assert set(tocsin_hook.groups()) == {
            frozenset({("host", "web-3")}), frozenset({("service", "ent-b")}), frozenset({("service", "ent-c")}),
        }

        # Phase 2: the disk is replaced; the alerts it muted are told.
        t1 = time.time()
        resolved = disk.resolved(t1)
        await pusher.notify(resolved, None)
        await notifier.receive(resolved, t1)
        for dt in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0):
            await notifier.flush(t1 + dt)
        await wait_for(lambda: len(am_hook.groups()) >= 5 and any(
            st == "resolved" for v in am_hook.groups().values() for _, st in v))
        await asyncio.sleep(2.5)
        assert am_hook.groups() == tocsin_hook.groups()
        assert (disk.fingerprint, "resolved") in tocsin_hook.groups()[frozenset({("host", "web-3")})]
        assert frozenset({("service", "ent-a")}) in tocsin_hook.groups()
    finally:
        await webhook.aclose()
        await pusher.aclose()
        await tocsin_hook.stop()
