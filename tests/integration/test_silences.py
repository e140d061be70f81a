"""Silences over HTTP (tocsin's API and Alertmanager's, through the real amtool) and the CLI,
persisted in the silences topic and honoured by every worker."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import time

import aiohttp
import pytest

import stream.alerting
from stream.app import TocsinApp, wait_until
from stream.broker import free_port
from stream.cli import main
from stream.settings import Config, TopicsConfig, WebConfig

TOKEN = "integration-token-42"  # noqa: S105 - a test token
AMTOOL = shutil.which("amtool")
# The worker serves stream.web's views once Notifications calls install_views (the coordinator's wiring).
WIRED = "install_views" in inspect.getsource(stream.alerting)


def _topics(names: str) -> TopicsConfig:
    return TopicsConfig(requests=f"{names}-r", disk_health=f"{names}-d", anomalies=f"{names}-a",
                        alerts=f"{names}-al", dead_letter=f"{names}-dl", silences=f"{names}-silences")


def test_silence_created_over_http_reaches_every_worker(kafka_bootstrap, unique_names, capsys, tmp_path,
                                                         monkeypatch):
    monkeypatch.setenv("TOCSIN_WEB_TOKEN", TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    names = unique_names()
    port = free_port()
    topics = _topics(names)
    cfg = Config(topics=topics, web=WebConfig(port=port))

    async def run() -> tuple[dict, int, int]:
        embedded = not os.environ.get("TOCSIN_TEST_BROKER")
        tapp = TocsinApp(cfg, kafka_bootstrap, embedded=embedded, receivers={}, app_id=f"{names}-app", web=True)
        # A second worker of the same group: it must honour the silence too.
        other = TocsinApp(Config(topics=topics, web=WebConfig(port=free_port())), kafka_bootstrap,
                          embedded=embedded, receivers={}, app_id=f"{names}-app", web=True)
        await tapp.app.start()
        await other.app.start()
        try:
            url = f"http://127.0.0.1:{port}/silences/"
            async with aiohttp.ClientSession() as http:
                await asyncio.sleep(1)  # the web server is up once the app started; let it settle
                bad = await http.post(url, json={"matchers": ['service="ent-idf"'], "duration": "1h"}, headers=auth)
                async with http.post(url, json={"matchers": ['service="ent-idf"'], "duration": "1h",
                                                "created_by": "oncall", "comment": "known flood, mitigated"},
                                     headers=auth) as r:
                    created, status = await r.json(), r.status
            # The worker's own silences agent reads it back from the topic.
            assert await wait_until(lambda: tapp.silences.get(created["id"]) is not None, timeout=30)
            assert await wait_until(lambda: other.silences.get(created["id"]) is not None, timeout=30)
            muted = tapp.notifier.silencer.mutes({"service": "ent-idf"}, tapp.clock())
            assert muted
            assert len(tapp.silences) == 1  # the refused one left nothing
            return created, status, bad.status
        finally:
            await other.app.stop()
            await tapp.app.stop()

    created, status, bad_status = asyncio.run(run())
    assert status == 201 and bad_status == 400
    # The CLI reads the same topic: the silence is listed, then expired.
    argv = ["silence", "--bootstrap-servers", kafka_bootstrap]
    path = tmp_path / "tocsin.yaml"
    path.write_text(f"topics:\n  silences: {topics.silences}\n")
    assert main([*argv, "--config", str(path), "list"]) == 0
    assert created["id"] in capsys.readouterr().out
    assert main([*argv, "--config", str(path), "expire", created["id"]]) == 0
    assert main([*argv, "--config", str(path), "list"]) == 0
    assert '"status":"expired"' in capsys.readouterr().out
    assert main([*argv, "--config", str(path), "expire", "no-such-id"]) == 2
    # The CLI validates with the same bounds, and a silence of everything needs --match-all.
    add = [*argv, "--config", str(path), "add", "--author", "a", "--comment", "c"]
    assert main([*add, "-m", 'service="x"', "--duration", "100000000h"]) == 2
    assert "longer than the limit, 30d" in capsys.readouterr().err
    assert main([*add, "-m", 'severity=~".+"']) == 2
    assert "silence everything" in capsys.readouterr().err
    assert main([*add, "-m", 'severity=~".+"', "--match-all", "--duration", "1h30m"]) == 0
    assert "silence " in capsys.readouterr().out


async def _amtool(url: str, *args: str, http_config: str | None = None) -> tuple[int, str, str]:
    opts = [f"--alertmanager.url={url}"] + ([f"--http.config.file={http_config}"] if http_config else [])
    p = await asyncio.create_subprocess_exec(AMTOOL, *opts, *args, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE,
                                             env={**os.environ, "HOME": "/nonexistent"})
    out, err = await asyncio.wait_for(p.communicate(), timeout=60)
    return p.returncode, out.decode(), err.decode()


@pytest.mark.skipif(not WIRED, reason="stream.alerting does not call stream.web.install_views yet")
@pytest.mark.skipif(AMTOOL is None, reason="amtool not installed (Debian: apt-get install prometheus-alertmanager)")
def test_amtool_against_workers_on_kafka(kafka_bootstrap, unique_names, tmp_path, monkeypatch):
    """amtool adds a silence on one worker, queries and expires it on another: the silences topic in between."""
    monkeypatch.setenv("TOCSIN_WEB_TOKEN", TOKEN)
    http_cfg = tmp_path / "amtool-http.yml"
    http_cfg.write_text(f"authorization:\n  credentials: {TOKEN}\n")
    names = unique_names()
    topics = _topics(names)
    ports = [free_port(), free_port()]

    async def run() -> None:
        embedded = not os.environ.get("TOCSIN_TEST_BROKER")
        apps = [TocsinApp(Config(topics=topics, web=WebConfig(port=p)), kafka_bootstrap, embedded=embedded,
                          receivers={}, app_id=f"{names}-app", web=True) for p in ports]
        for a in apps:
            await a.app.start()
        try:
            first, second = (f"http://127.0.0.1:{p}" for p in ports)
            async with aiohttp.ClientSession() as http:
                assert await wait_until(lambda: apps[0].app.web._runner is not None
                                        and bool(apps[0].app.web._runner.addresses), timeout=30)
                # The worker's web server: loopback only, none of Faust's debug views.
                assert all(a[0] == "127.0.0.1" for a in apps[0].app.web._runner.addresses)
                for path in ("/router/", "/table/", "/graph/"):
                    async with http.get(first + path) as r:
                        assert r.status == 404, path
            code, out, err = await _amtool(first, "silence", "add", "service=ent-idf", "--duration=1h30m",
                                           "--author=ana", "--comment=flood mitigated", http_config=str(http_cfg))
            assert code == 0, err
            sid = out.strip()
            assert await wait_until(lambda: apps[1].silences.get(sid) is not None, timeout=30)
            assert apps[1].notifier.silencer.mutes({"service": "ent-idf"}, time.time())
            code, out, err = await _amtool(second, "silence", "query", "-q", "service=ent-idf")
            assert code == 0 and out.split() == [sid], err
            code, _, err = await _amtool(second, "silence", "expire", sid)
            assert code != 0 and "401" in err  # no token, no write
            code, _, err = await _amtool(second, "silence", "expire", sid, http_config=str(http_cfg))
            assert code == 0, err
            assert await wait_until(lambda: apps[0].silences.get(sid).state(time.time()) == "expired", timeout=30)
            assert not apps[0].notifier.silencer.mutes({"service": "ent-idf"}, time.time())
        finally:
            for a in reversed(apps):
                await a.app.stop()

    asyncio.run(run())
