"""Silences over HTTP and the CLI, persisted in the silences topic and honoured by the worker."""

from __future__ import annotations

import asyncio
import os

import aiohttp

from stream.app import TocsinApp, wait_until
from stream.broker import free_port
from stream.cli import main
from stream.settings import Config, TopicsConfig, WebConfig


def test_silence_created_over_http_reaches_every_worker(kafka_bootstrap, unique_names, capsys, tmp_path):
    names = unique_names()
    port = free_port()
    topics = TopicsConfig(requests=f"{names}-r", disk_health=f"{names}-d", anomalies=f"{names}-a",
                          alerts=f"{names}-al", dead_letter=f"{names}-dl", silences=f"{names}-silences")
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
                bad = await http.post(url, json={"matchers": ['service="ent-idf"'], "duration": "1h"})
                async with http.post(url, json={"matchers": ['service="ent-idf"'], "duration": "1h",
                                                "created_by": "oncall", "comment": "known flood, mitigated"}) as r:
                    created, status = await r.json(), r.status
            # The worker's own silences agent reads it back from the topic.
            assert await wait_until(lambda: tapp.silences.get(created["id"]) is not None, timeout=30)
            assert await wait_until(lambda: other.silences.get(created["id"]) is not None, timeout=30)
            muted = tapp.notifier.silencer.mutes({"service": "ent-idf"}, tapp.clock())
            assert muted
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
