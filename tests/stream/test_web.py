"""The worker's HTTP API, over real HTTP against a real Faust web server on 127.0.0.1.

Each test builds a ``faust.App`` with :func:`stream.web.faust_web_settings`,
installs the views with :func:`stream.web.install_views` and starts the app's
web server (Faust's aiohttp driver, the one the worker runs) without a
broker: publishing goes to a list standing for the silences topic (the
integration test ``tests/integration/test_silences.py`` publishes to Kafka).
Faust refuses port 0, so a free port is picked first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import faust
import pytest

from alerts.silence import Silencer, SilenceStore
from detectors.configfile import load_model_text
from detectors.errors import ConfigError
from stream.broker import free_port
from stream.settings import Config, WebConfig
from stream.web import faust_web_settings, install_views

T = 1617696000.0  # 2021-04-06T08:00:00Z
TOKEN = "test-token-0123456789"  # noqa: S105 - a test token
GOOD = {"matchers": ['service="ent-idf"'], "duration": "1h", "created_by": "oncall", "comment": "known flood"}


@dataclass
class Server:
    url: str
    app: faust.App
    store: SilenceStore
    topic: list[dict] = field(default_factory=list)
    now: list[float] = field(default_factory=lambda: [T])
    fail_publish: bool = False

    def headers(self, token: str | None = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}


@contextlib.asynccontextmanager
async def serve(web: WebConfig | None = None, clock=None, **kw) -> AsyncIterator[Server]:
    web = web or WebConfig(port=free_port(), **kw)
    app = faust.App(f"web-test-{web.port}", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=True,
                    **faust_web_settings(web))
    srv = Server(f"http://127.0.0.1:{web.port}", app, SilenceStore())

    async def publish(rec: dict) -> None:
        if srv.fail_publish:
            raise ConnectionError("broker unreachable")
        srv.topic.append(rec)

    install_views(app, srv.store, publish, clock or (lambda: srv.now[0]), web)
    await app.web.start()
    try:
        yield srv
    finally:
        await app.web.stop()


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv("TOCSIN_WEB_TOKEN", TOKEN)


async def _req(method: str, url: str, **kw) -> tuple[int, object, dict]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kw) as r:
        text = await r.text()
        try:
            body = await r.json(content_type=None)
        except ValueError:
            body = text
        return r.status, body, dict(r.headers)


# -- where it listens, what it serves ------------------------------------------------
async def test_listens_on_loopback_only_by_default():
    web = WebConfig()
    assert web.host == "127.0.0.1" and faust_web_settings(web)["web_bind"] == "127.0.0.1"
    async with serve() as srv:
        addrs = srv.app.web._runner.addresses
        assert addrs and all(a[0] == "127.0.0.1" for a in addrs)
        # A non-loopback address of this machine, if it has one, is not answered on that port.
        try:
            other = socket.gethostbyname(socket.gethostname())
        except OSError:
            other = "127.0.0.1"
        if not other.startswith("127."):
            with pytest.raises(OSError), socket.create_connection((other, srv.app.conf.web_port), timeout=2):
                pass


async def test_faust_debug_views_are_off_and_would_be_on_without_these_settings():
    debug = ("/router/", "/table/", "/graph/", "/stats/")
    async with serve() as srv:
        for path in debug:
            status, _, _ = await _req("GET", srv.url + path)
            assert status == 404, path
        status, body, _ = await _req("GET", srv.url + "/")
        assert (status, body) == (200, {"status": "OK"})
    # Faust's defaults (what the worker had): /router/ and /table/ answer to anyone.
    port = free_port()
    plain = faust.App("web-test-plain", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=True,
                      web_bind="127.0.0.1", web_port=port)
    await plain.web.start()
    try:
        assert (await _req("GET", f"http://127.0.0.1:{port}/router/"))[0] == 200
        assert (await _req("GET", f"http://127.0.0.1:{port}/table/"))[0] == 200
    finally:
        await plain.web.stop()


# -- bearer token ----------------------------------------------------------------------
async def test_without_a_configured_token_writes_are_refused_and_nothing_is_stored(monkeypatch):
    monkeypatch.delenv("TOCSIN_WEB_TOKEN", raising=False)
    async with serve() as srv:
        status, body, _ = await _req("POST", srv.url + "/silences/", json=GOOD, headers=srv.headers())
        assert status == 403 and "writes are disabled" in body["error"]
        am = {"matchers": [{"name": "service", "value": "x", "isRegex": False}], "startsAt": "2021-04-06T08:00:00Z",
              "endsAt": "2021-04-06T09:00:00Z", "createdBy": "a", "comment": "c"}
        assert (await _req("POST", srv.url + "/api/v2/silences", json=am))[0] == 403
        assert (await _req("DELETE", srv.url + "/silences/some-id"))[0] == 403
        assert (await _req("GET", srv.url + "/silences/"))[:2] == (200, [])  # reads stay open
        assert len(srv.store) == 0 and srv.topic == []


async def test_writes_need_the_right_bearer_token(token_env):
    async with serve() as srv:
        for headers in ({}, srv.headers("wrong-token-0123456789"), srv.headers(TOKEN + "x"),
                        {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}):
            status, body, hdrs = await _req("POST", srv.url + "/silences/", json=GOOD, headers=headers)
            assert status == 401, headers
            assert hdrs["WWW-Authenticate"].startswith("Bearer")
        assert len(srv.store) == 0 and srv.topic == []
        status, created, _ = await _req("POST", srv.url + "/silences/", json=GOOD, headers=srv.headers())
        assert status == 201 and srv.topic[0]["id"] == created["id"]
        assert Silencer(srv.store).mutes({"service": "ent-idf"}, T)
        sid = created["id"]
        assert (await _req("DELETE", f"{srv.url}/silences/{sid}"))[0] == 401
        status, expired, _ = await _req("DELETE", f"{srv.url}/silences/{sid}", headers=srv.headers())
        assert status == 200 and expired["status"] == "expired"
        assert not Silencer(srv.store).mutes({"service": "ent-idf"}, T)


async def test_token_from_a_file_and_reads_behind_the_token(tmp_path, monkeypatch):
    monkeypatch.delenv("TOCSIN_WEB_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    async with serve(token_file=str(path), auth_reads=True) as srv:
        assert (await _req("GET", srv.url + "/silences/"))[0] == 401
        assert (await _req("GET", srv.url + "/api/v2/silences"))[0] == 401
        assert (await _req("GET", srv.url + "/silences/", headers=srv.headers()))[0] == 200
        assert (await _req("POST", srv.url + "/silences/", json=GOOD, headers=srv.headers()))[0] == 201


def test_the_token_is_never_read_from_the_yaml_and_an_unreadable_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="web.token: .*never written in the configuration file"):
        load_model_text("web:\n  token: abc\n", Config, "t.yaml")
    with pytest.raises(ConfigError, match="web.token_file: cannot read"):
        WebConfig(token_file=str(tmp_path / "missing")).write_token()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        WebConfig(token_file=str(tmp_path / "empty")).write_token()
    with pytest.raises(ConfigError, match="auth_reads"):
        install_views(faust.App("x", autodiscover=False), SilenceStore(), None, lambda: T,
                      WebConfig(token_env="TOCSIN_TEST_NO_SUCH_VARIABLE", auth_reads=True))  # noqa: S106


# -- silences validated and bounded before anything is stored ---------------------------
@pytest.mark.parametrize(("change", "error"), [
    ({"duration": "100000000h"}, "longer than the limit, 30d"),
    ({"duration": "31d"}, "longer than the limit, 30d"),
    ({"duration": None, "ends_at": "2999-01-01T00:00:00Z"}, "longer than the limit"),
    ({"duration": None, "ends_at": "99999-01-01T00:00:00Z"}, "ends_at:"),
    ({"duration": "1e400"}, "duration:"),
    ({"starts_at": "2021-06-01T00:00:00Z"}, "starts_at: 2021-06-01T00:00:00Z is more than 30d ahead"),
    ({"matchers": ['severity=~".+"']}, "silence everything"),
    ({"matchers": ['severity=~".+"', 'cause=~".*"', 'service!="x"']}, "silence everything"),
    ({"matchers": ['service="x"'] * 33}, "at most 32"),
    ({"comment": "c" * 1025}, "at most 1024"),
])
async def test_bad_silences_answer_400_and_leave_nothing_behind(token_env, change, error):
    async with serve() as srv:
        payload = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
        status, body, _ = await _req("POST", srv.url + "/silences/", json=payload, headers=srv.headers())
        assert status == 400 and error in body["error"], body
        assert len(srv.store) == 0 and srv.topic == []
        assert not Silencer(srv.store).mutes({"service": "ent-idf", "severity": "critical"}, T + 60)
        assert (await _req("GET", srv.url + "/silences/"))[:2] == (200, [])
        assert (await _req("GET", srv.url + "/api/v2/silences"))[:2] == (200, [])


async def test_a_silence_of_every_alert_needs_match_all(token_env):
    async with serve() as srv:
        everything = {**GOOD, "matchers": ['severity=~".+"']}
        assert (await _req("POST", srv.url + "/silences/", json=everything, headers=srv.headers()))[0] == 400
        status, rec, _ = await _req("POST", srv.url + "/silences/", json={**everything, "match_all": True},
                                    headers=srv.headers())
        assert status == 201 and rec["matchers"] == ['severity=~".+"']
        assert Silencer(srv.store).mutes({"service": "any", "severity": "critical"}, T)
        # A narrowed one needs no flag: the regex on severity names both, but service narrows it.
        ok = {**GOOD, "matchers": ['severity=~".+"', 'service="ent-idf"']}
        assert (await _req("POST", srv.url + "/silences/", json=ok, headers=srv.headers()))[0] == 201


async def test_alertmanager_duration_syntax_and_the_limits_configured(token_env):
    async with serve(max_silence_duration="2h") as srv:
        status, rec, _ = await _req("POST", srv.url + "/silences/", json={**GOOD, "duration": "1h30m"},
                                    headers=srv.headers())
        assert status == 201 and rec["ends_at"] == "2021-04-06T09:30:00Z"
        status, body, _ = await _req("POST", srv.url + "/silences/", json={**GOOD, "duration": "2h1m"},
                                     headers=srv.headers())
        assert status == 400 and "longer than the limit, 2h" in body["error"]


async def test_a_failed_publish_answers_503_and_keeps_nothing(token_env):
    async with serve() as srv:
        srv.fail_publish = True
        status, body, _ = await _req("POST", srv.url + "/silences/", json=GOOD, headers=srv.headers())
        assert status == 503 and "nothing was changed" in body["error"]
        assert len(srv.store) == 0
        srv.fail_publish = False
        _, rec, _ = await _req("POST", srv.url + "/silences/", json=GOOD, headers=srv.headers())
        srv.fail_publish = True
        assert (await _req("DELETE", f"{srv.url}/silences/{rec['id']}", headers=srv.headers()))[0] == 503
        assert srv.store.get(rec["id"]).state(T) == "active"


# -- request bodies ------------------------------------------------------------------------
async def test_bodies_are_size_and_depth_limited_never_500(token_env):
    async with serve(max_body_bytes=1024 * 1024) as srv:
        post = srv.url + "/silences/"
        deep = b"[" * 100_000 + b"]" * 100_000  # the body that gave a RecursionError 500
        status, body, _ = await _req("POST", post, data=deep, headers=srv.headers())
        assert status == 400 and "not valid JSON" in body["error"]
        nested = b'{"matchers": ' + b"[" * 20 + b"]" * 20 + b"}"
        status, body, _ = await _req("POST", post, data=nested, headers=srv.headers())
        assert status == 400 and "nested more than 16 levels" in body["error"]
        for bad in (b"", b"{", b"\xff\xfe", b"[1, 2]", b'"text"', b"NaN"):
            status, body, _ = await _req("POST", post, data=bad, headers=srv.headers())
            assert status == 400, bad
        am = srv.url + "/api/v2/silences"
        for bad in (deep, nested, b"{", b"[]", b'{"matchers": "x"}', b'{"matchers": [{"name": 1}]}'):
            status, body, _ = await _req("POST", am, data=bad, headers=srv.headers())
            assert status == 400 and isinstance(body, str), bad
    async with serve() as srv:  # default limit, 64 KiB
        big = {**GOOD, "comment": "x" * 70_000}
        status, body, _ = await _req("POST", srv.url + "/silences/", json=big, headers=srv.headers())
        assert status == 413 and "at most 65536" in body["error"]

        async def chunks():  # no Content-Length: the limit holds while reading
            for _ in range(80):
                yield b" " * 1024

        status, body, _ = await _req("POST", srv.url + "/silences/", data=chunks(), headers=srv.headers())
        assert status == 413
        assert len(srv.store) == 0 and srv.topic == []


# -- Alertmanager's API v2 --------------------------------------------------------------
def _am(matchers: list[dict], **kw) -> dict:
    return {"matchers": matchers, "startsAt": "2021-04-06T08:00:00.000Z", "endsAt": "2021-04-06T10:00:00.000Z",
            "createdBy": "ana", "comment": "maintenance", **kw}


async def test_alertmanager_silences_api(token_env):
    async with serve() as srv:
        am = srv.url + "/api/v2/silences"
        status, body, _ = await _req("POST", am, headers=srv.headers(), json=_am(
            [{"name": "service", "value": "ent-.*", "isRegex": True}, {"name": "cause", "value": "disk_failure",
                                                                         "isRegex": False, "isEqual": False}]))
        assert status == 200
        sid = body["silenceID"]
        assert srv.topic[-1]["matchers"] == ['service=~"ent-.*"', 'cause!="disk_failure"']
        assert Silencer(srv.store).mutes({"service": "ent-idf", "cause": "suspected_attack"}, T)
        assert not Silencer(srv.store).mutes({"service": "ent-idf", "cause": "disk_failure"}, T)
        _, other, _ = await _req("POST", am, headers=srv.headers(), json=_am(
            [{"name": "alertname", "value": "tocsin", "isRegex": False}, {"name": "host", "value": "web-3",
                                                                          "isRegex": False}]))
        assert Silencer(srv.store).mutes({"service": None, "host": "web-3"}, T)  # alertname is tocsin's

        status, listed, _ = await _req("GET", am)
        assert status == 200 and {s["id"] for s in listed} == {sid, other["silenceID"]}
        one = next(s for s in listed if s["id"] == sid)
        assert one["status"] == {"state": "active"} and one["createdBy"] == "ana"
        assert one["matchers"][0] == {"name": "service", "value": "ent-.*", "isRegex": True, "isEqual": True}
        _, filtered, _ = await _req("GET", am, params=[("filter", 'host="web-3"')])
        assert [s["id"] for s in filtered] == [other["silenceID"]]
        assert (await _req("GET", am, params=[("filter", "not a matcher")]))[0] == 400

        assert (await _req("GET", f"{srv.url}/api/v2/silence/{sid}"))[1]["id"] == sid
        assert (await _req("GET", f"{srv.url}/api/v2/silence/nope"))[0] == 404

        # Update: same matchers keep the id; other matchers expire it and make a new one.
        upd = _am(one["matchers"], id=sid, endsAt="2021-04-06T11:00:00Z")
        status, body, _ = await _req("POST", am, headers=srv.headers(), json=upd)
        assert status == 200 and body["silenceID"] == sid and srv.topic[-1]["ends_at"] == "2021-04-06T11:00:00Z"
        status, body, _ = await _req("POST", am, headers=srv.headers(), json={
            **upd, "matchers": [{"name": "service", "value": "ent-idf", "isRegex": False}]})
        assert status == 200 and body["silenceID"] != sid
        assert srv.store.get(sid).state(T) == "expired"
        assert (await _req("POST", am, headers=srv.headers(), json={**upd, "id": "nope"}))[0] == 404

        assert (await _req("DELETE", f"{srv.url}/api/v2/silence/{other['silenceID']}"))[0] == 401
        status, _, _ = await _req("DELETE", f"{srv.url}/api/v2/silence/{other['silenceID']}", headers=srv.headers())
        assert status == 200 and srv.store.get(other["silenceID"]).state(T) == "expired"
        assert (await _req("DELETE", f"{srv.url}/api/v2/silence/nope", headers=srv.headers()))[0] == 404
        status, body, _ = await _req("POST", am, headers=srv.headers(), json=_am(
            [{"name": "severity", "value": ".+", "isRegex": True}]))
        assert status == 400 and "silence everything" in body


# -- amtool, the real one ----------------------------------------------------------------
AMTOOL = shutil.which("amtool")


async def _amtool(url: str, *args: str, http_config: str | None = None) -> tuple[int, str, str]:
    opts = [f"--alertmanager.url={url}"] + ([f"--http.config.file={http_config}"] if http_config else [])
    env = {**os.environ, "HOME": os.path.dirname(http_config or "/nonexistent")}  # no ~/.config/amtool
    p = await asyncio.create_subprocess_exec(AMTOOL, *opts, *args, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(p.communicate(), timeout=60)
    return p.returncode, out.decode(), err.decode()


@pytest.mark.skipif(AMTOOL is None, reason="amtool not installed (Debian: apt-get install prometheus-alertmanager)")
async def test_amtool_adds_queries_and_expires_silences(token_env, tmp_path):
    import time

    cfg = tmp_path / "amtool-http.yml"
    cfg.write_text(f"authorization:\n  type: Bearer\n  credentials: {TOKEN}\n")
    async with serve(clock=time.time) as srv:
        code, out, err = await _amtool(srv.url, "silence", "add", "service=ent-idf", "cause=~suspected_.*",
                                       "--duration=1h30m", "--author=ana", "--comment=flood mitigated",
                                       http_config=str(cfg))
        assert code == 0, err
        sid = out.strip()
        s = srv.store.get(sid)
        assert s is not None and srv.topic[-1]["id"] == sid
        assert round(s.ends_at - s.starts_at) in range(5395, 5401)
        assert Silencer(srv.store).mutes({"service": "ent-idf", "cause": "suspected_attack"}, time.time())

        code, out, err = await _amtool(srv.url, "silence", "query", "-q", http_config=str(cfg))
        assert code == 0 and out.split() == [sid], err
        code, out, _ = await _amtool(srv.url, "silence", "query", "service=ent-idf", http_config=str(cfg))
        assert sid in out and "flood mitigated" in out and "ana" in out
        code, out, _ = await _amtool(srv.url, "silence", "query", "-q", "service=other", http_config=str(cfg))
        assert code == 0 and out.strip() == ""

        # Without the token, amtool's write is refused and says so.
        code, out, err = await _amtool(srv.url, "silence", "add", "service=x", "--comment=c")
        assert code != 0 and "401" in err
        code, out, err = await _amtool(srv.url, "silence", "add", 'severity=~".+"', "--comment=c",
                                       http_config=str(cfg))
        assert code != 0 and "silence everything" in err

        code, out, err = await _amtool(srv.url, "silence", "expire", sid, http_config=str(cfg))
        assert code == 0, err
        assert srv.store.get(sid).state(time.time()) == "expired"
        code, out, _ = await _amtool(srv.url, "silence", "query", "-q", "--expired", http_config=str(cfg))
        assert out.split() == [sid]
