"""The operator's console in a real browser: Playwright driving the system's Chromium (headless), against
the real app between the fake Twilio caller and the fake model. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import warnings
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.helpers import GREETING, WAIT, call_stack, event_types
from voiceagent.store import CallRecord
from voiceagent.testing import FIXTURE_TEXTS, load_fixture, silence, wait_until
from voiceagent.transcripts import TranscriptLine

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

TOKEN = "console-token-0123456789abcdef"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package; .ci/run installs it
EXPECT_MS = WAIT * 1000
HOSTILE = "<img src=x onerror=alert(1)>"


def env(directory: Path, **more: str) -> dict[str, str]:
    return {
        "VOICEAGENT_DATABASE_URL": f"sqlite:///{directory / 'calls.db'}",
        "VOICEAGENT_API_TOKEN": TOKEN,
        "VOICEAGENT_RECORDINGS": "on",
        "VOICEAGENT_RECORDINGS_DIR": str(directory / "recordings"),
        **more,
    }


@contextlib.asynccontextmanager
async def chromium(*args: str) -> AsyncIterator[Browser]:
    """The distribution's Chromium (Playwright's own download is not used), headless."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(args))
        try:
            yield browser
        finally:
            await browser.close()


async def signed_in(browser: Browser, base_url: str, hash_: str = "live", problems: list[str] | None = None) -> Page:
    """A console page after signing in with the token, at ``#hash_``. ``problems`` collects any dialog
    (a script injected through a transcript would open one) and any Content-Security-Policy violation."""
    page = await browser.new_page(viewport={"width": 960, "height": 600})
    page.set_default_timeout(EXPECT_MS)
    seen = problems if problems is not None else []
    page.on("dialog", lambda dialog: seen.append(f"dialog: {dialog.message}"))
    page.on("console", lambda message: seen.append(message.text) if "Content Security Policy" in message.text else None)
    await page.goto(f"{base_url}/console")
    await page.fill("input[name=token]", TOKEN)
    await page.press("input[name=token]", "Enter")  # Enter submits
    await page.wait_for_selector("nav")
    await page.goto(f"{base_url}/console#{hash_}")
    return page


async def test_nothing_is_served_without_the_session_and_foreign_origins_are_refused(tmp_path: Path) -> None:
    async with call_stack(env=env(tmp_path)) as stack, httpx.AsyncClient(base_url=stack.app.base_url) as http:
        base = stack.app.base_url
        page = await http.get("/console")
        assert page.status_code == 200 and 'name="token"' in page.text and "main.js" not in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for path in ("/console/static/main.js", "/console/static/live.js", "/console/health", "/console/api/calls"):
            assert (await http.get(path)).status_code == 401, path
        assert (await http.post(f"/console/api/calls/CA{'0' * 32}/hangup", headers={"Origin": base})).status_code == 401
        assert (await http.get("/console/static/console.css")).status_code == 200  # the sign-in page's own
        wrong = await http.post("/console/session", data={"token": "nope"}, headers={"Origin": base})
        assert wrong.status_code == 303 and wrong.headers["location"] == "/console?wrong"
        foreign = await http.post("/console/session", data={"token": TOKEN}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and "set-cookie" not in foreign.headers

        signed = await http.post("/console/session", data={"token": TOKEN}, headers={"Origin": base})
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie  # loopback
        assert (await http.get("/console/api/calls")).status_code == 200  # the session, no bearer token
        hangup = f"/console/api/calls/CA{'0' * 32}/hangup"
        assert (await http.post(hangup, headers={"Origin": "https://evil.example"})).status_code == 403
        assert (await http.post(hangup)).status_code == 403  # no Origin at all
        assert (await http.post(hangup, headers={"Origin": base})).status_code == 404  # through: the API's answer
        # behind a proxy: another Host, the Origin of PUBLIC_BASE_URL; the cookie is Secure off loopback
        proxied = await http.post(
            "/console/session", data={"token": TOKEN}, headers={"Origin": base, "Host": "voice.example.com"}
        )
        assert proxied.status_code == 303 and "Secure" in proxied.headers["set-cookie"]
        http.cookies.clear()
        http.cookies.set("voiceagent_console", cookie.split(";")[0].split("=", 1)[1], path="/console")
        json_sign_in = await http.post("/console/session", json={"token": TOKEN}, headers={"Origin": base})
        assert json_sign_in.status_code == 415  # bounded as Twilio's forms are, before anything parses it

        # the softphone: a call only for the session, from our Origin, and a stream only for a call it placed
        session = {"Cookie": f"voiceagent_console={http.cookies['voiceagent_console']}"}
        assert (await http.post("/console/phone", headers={"Origin": "https://evil.example"})).status_code == 403
        stream = base.replace("http", "ws") + "/console/phone/stream"
        for headers in ({"Origin": base}, {**session, "Origin": "https://evil.example"}, session):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(stream, additional_headers=headers, open_timeout=WAIT):
                    pass
            assert refused.value.response.status_code == 403
        async with connect(stream, additional_headers={**session, "Origin": base}, open_timeout=WAIT) as socket:
            start = {"event": "start", "streamSid": "MZ" + "1" * 32, "start": {"callSid": "CA" + "2" * 32}}
            await socket.send(json.dumps(start))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), WAIT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008  # not a call it placed
        assert not stack.app.service.calls

        out = await http.post("/console/logout", headers={"Origin": base})
        assert out.status_code == 303
        http.cookies.clear()
        http.cookies.set("voiceagent_console", cookie.split(";")[0].split("=", 1)[1], path="/console")
        assert (await http.get("/console/api/calls")).status_code == 401  # logging out ended the session

        async with chromium() as browser:  # a page on another origin cannot reach in
            other_page = await signed_in(browser, base)
            await other_page.goto(f"{base}/healthz")
            status = await other_page.evaluate(
                """async (base) => {
                    const other = base.replace("127.0.0.1", "localhost");
                    try { const r = await fetch(other + "/console/api/calls", {credentials: "include"});
                          return r.status; } catch (e) { return "blocked"; }
                }""",
                base,
            )
            assert status in (401, "blocked")


async def test_a_live_call_is_watched_and_stepped_into_and_lands_in_history(tmp_path: Path) -> None:
    async with (
        call_stack(env=env(tmp_path), replies=("agent_goodbye",)) as stack,
        chromium() as browser,
    ):
        problems: list[str] = []
        page = await signed_in(browser, stack.app.base_url, problems=problems)
        async with stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            sid = caller.call_sid
            card = page.locator(f".call[data-sid={sid}]")
            await expect(card.locator("h3")).to_contain_text("+1555***4567")
            await caller.wait_until(lambda: len(caller.played) > 1500 * 8, timeout=WAIT)
            await caller.say("caller_interrupt")  # talks over the greeting
            await expect(card.locator(".barge-in")).to_contain_text("the caller heard")
            await expect(card.locator(".line.agent").first).to_contain_text(FIXTURE_TEXTS["agent_greeting"][:20])
            await expect(card.locator(".line .cut").first).to_contain_text("interrupted, heard")
            [session] = stack.model.sessions
            await stack.model.wait_for(lambda: len(session.produced) >= 2 and not session.response_live, timeout=WAIT)

            # what a caller says is text, never HTML
            service = stack.app.service
            service.recorder.line(service.recorder.live[sid], TranscriptLine(sid, "caller", HOSTILE))
            await expect(card.locator(".line.caller").last).to_contain_text(HOSTILE)
            assert await card.locator(".transcript img").count() == 0
            assert await page.evaluate("() => document.images.length") == 0

            await card.locator("input[name=text]").fill("Your table for four is confirmed.")
            await card.get_by_role("button", name="Say").click()
            await expect(card.locator(".result")).to_have_text("say: 202 accepted")
            await stack.model.wait_for(
                lambda: any(
                    "table for four" in json.dumps(e) for e in event_types(session.received, "response.create")
                ),
                WAIT,
            )
            await card.locator("input[name=to]").fill("5551230001")
            await card.get_by_role("button", name="Transfer").click()
            await expect(card.locator(".result")).to_contain_text("transfer: 400")
            await expect(card.locator(".result")).to_contain_text("E.164")
            await expect(card.locator(".latency")).not_to_have_text("no turn yet")
            await page.screenshot(path=str(SCREENSHOTS / "live.png"))

            await card.get_by_role("button", name="Hang up").click()
            await expect(card.locator(".result")).to_have_text("hangup: 202 accepted")
            await caller.wait_closed(timeout=WAIT)
        await expect(card.locator(".status")).to_contain_text("ended: an operator hung up")
        store = stack.app.service.recorder.store
        assert store is not None and await asyncio.to_thread(store.flush, WAIT)
        recording = tmp_path / "recordings" / f"{sid}.wav"
        await wait_until(lambda: recording.exists() and not stack.app.service.calls, WAIT)

        await page.goto(f"{stack.app.base_url}/console#history")
        await expect(page.locator(f"tr[data-sid={sid}]")).to_contain_text("an operator hung up")
        await page.locator(f"tr[data-sid={sid}] a").click()
        await expect(page.locator(".end")).to_have_text("Ended: an operator hung up")
        await expect(page.locator(".call-page .line.caller").last).to_contain_text(HOSTILE)
        audio = page.locator(".recording audio")
        await audio.wait_for()
        duration = await audio.evaluate(
            "a => a.readyState >= 1 ? a.duration"
            " : new Promise(r => a.addEventListener('loadedmetadata', () => r(a.duration)))"
        )
        assert duration > 1.0  # the recording loads and plays: seconds of the call
        await page.screenshot(path=str(SCREENSHOTS / "call.png"), full_page=True)

        await page.goto(f"{stack.app.base_url}/console#health")
        tiles = page.locator(".tile")
        await expect(tiles.nth(0)).to_contain_text(f"0 of {stack.app.settings.max_calls}")  # in progress: none
        await expect(tiles.nth(1)).to_contain_text("1")  # calls in the last hour
        await expect(tiles.nth(3)).not_to_contain_text("– / –")  # time to greeting: this call's
        await expect(page.locator(".sparkline polyline")).to_have_count(1)
        await page.screenshot(path=str(SCREENSHOTS / "health.png"))
        assert problems == []  # no dialog opened, and the page never needed what the CSP forbids


def caller_wav(path: Path) -> Path:
    """A fixture as Chromium's fake microphone wants it (16-bit PCM WAV): quiet while the greeting plays,
    then the caller talks over it."""
    ulaw = silence(1500) + load_fixture("caller_interrupt") + silence(8000)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(audioop.ulaw2lin(ulaw, 2))
    return path


async def test_the_softphone_is_a_real_call_from_the_browser(tmp_path: Path) -> None:
    microphone = caller_wav(tmp_path / "caller.wav")
    args = (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    )
    async with call_stack(speed=1.0, env=env(tmp_path)) as stack, chromium(*args) as browser:
        problems: list[str] = []
        watcher = await signed_in(browser, stack.app.base_url, "live", problems)
        page = await signed_in(browser, stack.app.base_url, "phone", problems)
        phone = page.locator(".phone")
        await page.get_by_role("button", name="Call the agent").click()
        await expect(phone).to_have_attribute("data-state", "in-call")
        [sid] = await wait_until(lambda: list(stack.app.service.calls), WAIT)
        await expect(watcher.locator(f".call[data-sid={sid}]")).to_be_visible()  # a call like any other
        [session] = await stack.model.wait_for(lambda: stack.model.sessions, WAIT)
        # the page plays the greeting as it arrives, and the model hears the microphone
        await page.wait_for_function("() => +document.querySelector('.phone').dataset.played > 8000")
        await stack.model.wait_for(lambda: len(session.audio_received) > 8000, WAIT)
        # the caller talks over the greeting: the service clears, and the page stops playing at once
        await page.wait_for_function("() => +document.querySelector('.phone').dataset.clears >= 1")
        played = int(await phone.get_attribute("data-played") or 0)
        assert played < len(GREETING)  # not all of the greeting: the clear cut it
        assert stack.app.service.recorder.live[sid].barge_ins >= 1
        await page.screenshot(path=str(SCREENSHOTS / "softphone.png"))
        await page.get_by_role("button", name="Hang up").click()
        await expect(phone).to_have_attribute("data-state", "ended")
        await wait_until(lambda: not stack.app.service.calls, WAIT)
        assert problems == []


async def test_history_shows_real_calls_and_the_eval_calls_only_when_asked(tmp_path: Path) -> None:
    async with call_stack(env=env(tmp_path)) as stack, chromium() as browser:
        store = stack.app.service.recorder.store
        assert store is not None
        now = time.time()
        real, marked = "CA" + "1" * 32, "CA" + "e" * 32
        store.call_started(CallRecord(call_sid=real, instance="x", started_at=now - 60, from_number="+1555***0001"))
        store.call_started(CallRecord(call_sid=marked, instance="x", started_at=now - 30, kind="eval"))
        page = await signed_in(browser, stack.app.base_url)
        async with stack.caller(eval_mark=True) as caller:  # in progress, an eval call is shown, marked
            assert await caller.dial(), caller.refusal
            await expect(page.locator(f".call[data-sid={caller.call_sid}] h3 .kind-eval")).to_have_text("eval")
            await caller.hangup()
        await wait_until(lambda: not stack.app.service.recorder.live, WAIT)
        assert await asyncio.to_thread(store.flush, WAIT)
        await page.goto(f"{stack.app.base_url}/console#history")
        await expect(page.locator(f"tr[data-sid={real}]")).to_contain_text("+1555***0001")
        await expect(page.locator("tbody tr")).to_have_count(1)  # the real call only
        await page.select_option("select[name=kind]", "all")
        await page.get_by_role("button", name="Filter").click()
        await expect(page.locator(f"tr[data-sid={marked}] .kind-eval")).to_have_text("eval")
        await expect(page.locator("tbody tr")).to_have_count(3)
        await page.select_option("select[name=kind]", "eval")
        await page.get_by_role("button", name="Filter").click()
        await expect(page.locator("tbody tr[data-kind=eval]")).to_have_count(2)
        await expect(page.locator("tbody tr")).to_have_count(2)
