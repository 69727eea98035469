"""The whole path with real parts: page -> content script -> service worker -> native host, back."""

from __future__ import annotations

import os
import re
import signal
from typing import Any

import jsonschema
from harness.webmail_server import WebmailServer
from playwright.sync_api import expect

from native_host.protocol import SCHEMA

MESSAGE_SCHEMA = jsonschema.Draft202012Validator(SCHEMA)

FIVE_MIB = 5 * 2**20


def test_host_answer_appears_in_the_gmail_page(page: Any, webmail: WebmailServer) -> None:
    page.goto(webmail.url("/mail/u/0/"))
    badge = page.locator("autosmime-status span")
    expect(badge).to_have_attribute("data-state", "ok")
    expect(badge).to_have_text(re.compile(r"autosmime: host \d+\.\d+\.\d+ ready \(protocol 1\)"))


def test_five_mib_round_trip_both_ways_in_chunks(worker: Any) -> None:
    result = worker.evaluate(
        """async (size) => {
            const port = globalThis.autosmime.nativePort.ensurePort();
            const counts = { sent: 0, received: 0 };
            const samples = { sent: null, received: null };
            const post = port.postMessage.bind(port);
            port.postMessage = (frame) => {
                if (frame.event === 'chunk') counts.sent++;
                samples.sent ??= frame;
                post(frame);
            };
            port.onMessage.addListener((m) => {
                if (m.event === 'chunk') counts.received++;
                samples.received ??= m;
            });
            const unit = 'Grüße, 世界! 😀 ';
            const payload = unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
            const echoed = await globalThis.autosmime.request('echo', { payload });
            return { same: echoed === payload, length: echoed.length, ...counts, samples };
        }""",
        FIVE_MIB,
    )
    assert result["same"] is True and result["length"] == FIVE_MIB
    # 5 Mi UTF-16 units of mixed text are more than 5 MiB of UTF-8: chunks of 512 KiB both ways.
    assert result["sent"] > 10 and result["received"] > 10
    # What the extension really put on the wire, and got back, obeys the one schema.
    for frame in result["samples"].values():
        MESSAGE_SCHEMA.validate(frame)
        assert frame["event"] == "chunk"


def test_small_requests_from_the_extension_obey_the_schema(worker: Any) -> None:
    frame = worker.evaluate(
        """async () => {
            const port = globalThis.autosmime.nativePort.ensurePort();
            const post = port.postMessage.bind(port);
            let first = null;
            port.postMessage = (f) => { first ??= f; post(f); };
            await globalThis.autosmime.request('echo', { payload: [1, 'two'] });
            return first;
        }"""
    )
    MESSAGE_SCHEMA.validate(frame)
    assert set(frame) == {"id", "op", "params"} and frame["op"] == "echo"


def test_progress_events_reach_the_caller(worker: Any) -> None:
    events = worker.evaluate(
        """async () => {
            const seen = [];
            const result = await globalThis.autosmime.request(
                'echo', { payload: 'done', progress: 3 }, { onProgress: (p) => seen.push(p) });
            return { result, seen };
        }"""
    )
    assert events["result"] == "done"
    assert [e["done"] for e in events["seen"]] == [1, 2, 3]


def test_host_errors_arrive_typed(worker: Any) -> None:
    error = worker.evaluate(
        """async () => {
            try { await globalThis.autosmime.request('no.such.op', {}); return null; }
            catch (e) { return { name: e.name, code: e.code, message: e.message }; }
        }"""
    )
    assert error == {"name": "HostError", "code": "unknown_op", "message": error["message"]}
    assert "no.such.op" in error["message"]


def test_worker_reconnects_after_the_host_dies(worker: Any) -> None:
    first = worker.evaluate(
        """async () => {
            const hello = await globalThis.autosmime.request('hello', {});
            globalThis.autosmime.nativePort.lastDisconnect = null;
            return hello;
        }"""
    )
    os.kill(first["pid"], signal.SIGKILL)
    # Wait for the disconnect itself, not for an empty port: the onboarding tab opened on install
    # also asks the host things, and may reconnect before a poll would see the port empty.
    disconnected = worker.evaluate(
        """async () => {
            const port = globalThis.autosmime.nativePort;
            const deadline = Date.now() + 10000;
            while (port.lastDisconnect === null && Date.now() < deadline) {
                await new Promise((resolve) => setTimeout(resolve, 10));
            }
            return port.lastDisconnect;
        }"""
    )
    assert disconnected, "the worker never noticed that the host died"
    second = worker.evaluate("() => globalThis.autosmime.request('hello', {})")
    assert second["pid"] != first["pid"]
    assert worker.evaluate("() => globalThis.autosmime.nativePort.connections") == 2


def test_the_gmail_page_reports_only_the_signed_in_address(
    page: Any, webmail: WebmailServer, worker: Any
) -> None:
    """What onboarding pre-fills: the address from Gmail's title, and nothing else of it."""
    page.goto(webmail.url("/mail/u/0/"))
    expect(page.locator("autosmime-status span")).to_have_attribute("data-state", "ok")
    hint = worker.evaluate(
        """async () => {
            const deadline = Date.now() + 10000;
            while (Date.now() < deadline) {
                const { accountHint } = await chrome.storage.session.get('accountHint');
                if (accountHint) return accountHint;
                await new Promise((resolve) => setTimeout(resolve, 20));
            }
            return null;
        }"""
    )
    assert hint is not None, "the content script reported no address"
    assert hint["address"] == "alice@example.test"
    assert set(hint) <= {"address", "origin", "seen"}
