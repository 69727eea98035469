"""What a hostile webmail page does to the secure frames, as the page's own script (Playwright's
`page.evaluate` in the top frame), and what it can observe; plus the messages it probes with.

Every attack here was shown to work on the extension before docs/SECURITY.md's defenses (issue
10): the page read the frames' channel from their URLs, framed ui/viewer.html and ui/editor.html
itself, posted commands to them and received whatever they posted back. The scripts therefore try
both that old protocol (a channel in the URL, `frame-command` messages) and the new one (claims
with secrets the page had to guess), so a test fails if either is obeyed.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from native_host.transport import browser_ids
from shared_pki import mime
from shared_pki.cms import enveloped
from shared_pki.errors import PkiError

EXTENSION_ORIGIN = f"chrome-extension://{browser_ids.chromium_id()}"
#: Words the page wants the viewer's trusted status line to say.
SPOOF = "Signed by your bank: valid (page-spoof-4e1c)"

# ---- what the page observes -------------------------------------------------------------------

#: Installs, in the page's main world, a record of every message posted to the page's windows
#: (the top window and its same-origin frames, such as Roundcube's preview frame) by an
#: extension frame, and of the secure frames' sizes. Idempotent; call again after a frame reloads.
RECORD = """(extensionOrigin) => {
    const top = window;
    top.__hostile ??= { messages: [], documents: new WeakSet(), timer: null };
    // Keyed by document: a frame's window object stays the same as it navigates, its listeners
    // do not.
    const watch = (win) => {
        if (top.__hostile.documents.has(win.document)) return;
        top.__hostile.documents.add(win.document);
        win.addEventListener('message', (event) => {
            if (String(event.origin).startsWith(extensionOrigin) || event.origin === 'null') {
                let data;
                try {
                    data = JSON.parse(JSON.stringify(event.data));
                } catch {
                    data = String(event.data);
                }
                top.__hostile.messages.push({ origin: event.origin, data });
            }
        }, true);
    };
    // The page's own frames (Roundcube's preview) get new windows as they navigate: watch each
    // one as soon as it exists.
    const watchFrames = () => {
        for (const frame of document.querySelectorAll('iframe')) {
            try {
                if (frame.contentDocument) watch(frame.contentWindow);
            } catch { /* cross-origin */ }
        }
    };
    watch(window);
    watchFrames();
    top.__hostile.timer ??= setInterval(watchFrames, 10);
    return true;
}"""

#: Every secure frame the page can find (its own document and same-origin frames), with the
#: size the page measures. Returns [{kind, src, width, height}].
FRAMES = """() => {
    const docs = [document];
    for (const frame of document.querySelectorAll('iframe')) {
        try {
            if (frame.contentDocument) docs.push(frame.contentDocument);
        } catch { /* not ours */ }
    }
    const found = [];
    for (const doc of docs) {
        const holders = doc.querySelectorAll('autosmime-secure-editor, autosmime-secure-viewer');
        for (const holder of holders) {
            const frame = holder.shadowRoot?.querySelector('iframe');
            if (!frame) continue;
            const box = frame.getBoundingClientRect();
            found.push({
                kind: frame.className, src: frame.src, width: box.width, height: box.height,
            });
        }
    }
    return found;
}"""


def record(page: Any, extension_origin: str = EXTENSION_ORIGIN) -> None:
    """`page`: a Playwright page, or anything with its `evaluate(function, arg)` (Firefox)."""
    page.evaluate(RECORD, extension_origin)


def observed(page: Any) -> list[dict[str, Any]]:
    """What extension frames posted to the page's windows since record()."""
    return page.evaluate("() => window.__hostile?.messages ?? []")


def secure_frames(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(FRAMES)


# ---- the attacks ------------------------------------------------------------------------------

#: Frames an extension page itself (any URL it likes), waits for it to load, and posts it every
#: command in `posts` (`{{channel}}` and `{{origin}}` filled in). Returns the frame's URL.
FRAME_IT_YOURSELF = """async ({ url, posts, hidden }) => {
    const frame = document.createElement('iframe');
    frame.src = url;
    frame.className = 'page-made-frame';
    if (hidden) frame.style.cssText = 'position:absolute;left:-9999px;width:10px;height:10px';
    const compose = document.querySelector('div.M9, body.action-compose #layout-content');
    (compose ?? document.body).append(frame);
    await new Promise((done) => frame.addEventListener('load', done, { once: true }));
    for (const post of posts) frame.contentWindow.postMessage(post, '*');
    return frame.src;
}"""

#: Posts messages to a secure frame the content script placed: the page finds it through the
#: open shadow root (in `doc`, the top document or a same-origin frame's), reads whatever its URL
#: says (the old channel), and posts each message (`$channel` replaced by that channel).
POST_TO_SECURE_FRAME = """({ holder, inPreview, posts }) => {
    const doc = inPreview ? document.querySelector('#messagecontframe').contentDocument : document;
    const frame = doc.querySelector(holder).shadowRoot.querySelector('iframe');
    const params = new URLSearchParams(new URL(frame.src).hash.slice(1));
    const channel = params.get('channel');
    const fill = (value) => JSON.parse(JSON.stringify(value).replaceAll('$channel', channel ?? ''));
    for (const post of posts) frame.contentWindow.postMessage(fill(post), '*');
    return { src: frame.src, channel };
}"""

#: Reloads the secure editor with a lower mode in its URL (a query change forces a reload; the
#: old editor read its mode from the URL's fragment). Resolves once the new document loaded.
RELOAD_EDITOR_AS_SIGN = """async () => {
    const holder = document.querySelector('autosmime-secure-editor');
    const frame = holder.shadowRoot.querySelector('iframe');
    const url = new URL(frame.src);
    const params = new URLSearchParams(url.hash.slice(1));
    params.set('mode', 'sign');
    url.search = '?reload=' + Date.now() + '&mode=sign';
    url.hash = params.toString();
    const loaded = new Promise((done) => frame.addEventListener('load', done, { once: true }));
    frame.src = url.href;
    await loaded;
    return frame.src;
}"""


def old_frame_url(
    page_path: str,
    origin: str,
    mode: str | None = None,
    channel: str | None = None,
    extension_origin: str = EXTENSION_ORIGIN,
) -> tuple[str, str]:
    """A URL of our page with a channel (fresh unless given), as the old content script made
    them."""
    channel = channel or str(uuid.uuid4())
    params = f"channel={channel}&origin={origin}"
    if mode:
        params += f"&mode={mode}"
    return f"{extension_origin}/{page_path}#{params}", channel


def junk_claims(count: int = 3) -> list[dict[str, Any]]:
    """Claims with secrets the page made up (it cannot read the real ones)."""
    return [{"autosmime": "autosmime.claim", "secret": uuid.uuid4().hex * 2} for _ in range(count)]


def old_commands(channel: str, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"autosmime": "frame-command", "channel": channel, **c} for c in commands]


#: Whatever channel the secure editor's URL names (the old one did; the page reads it).
EDITOR_CHANNEL = """() => {
    const holder = document.querySelector('autosmime-secure-editor');
    const frame = holder.shadowRoot.querySelector('iframe');
    return new URLSearchParams(new URL(frame.src).hash.slice(1)).get('channel');
}"""


def frame_made_by_page(
    page: Any,
    page_path: str,
    origin: str,
    commands: list[dict[str, Any]],
    mode: str | None = None,
    channel: str | None = None,
    extension_origin: str = EXTENSION_ORIGIN,
) -> str:
    """The page frames our page itself (on `channel`, else a fresh one) and posts it commands,
    old style and new."""
    url, channel = old_frame_url(page_path, origin, mode, channel, extension_origin)
    posts = [*junk_claims(), *old_commands(channel, commands), *commands]
    return page.evaluate(FRAME_IT_YOURSELF, {"url": url, "posts": posts, "hidden": True})


# ---- host activity ----------------------------------------------------------------------------


def host_log_offset(person: Any) -> int:
    log = person.browser.host_log
    return log.stat().st_size if log.exists() else 0


def host_ops(person: Any, op: str, offset: int) -> tuple[list[dict], list[dict]]:
    """('op' entries, 'done' entries) of `op` in person's host log after byte offset."""
    log = person.browser.host_log
    if not log.exists():
        return [], []
    entries = []
    for line in log.read_bytes()[offset:].splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("op") == op:
            entries.append(entry)
    return (
        [e for e in entries if e.get("event") == "op"],
        [e for e in entries if e.get("event") == "done"],
    )


# ---- probes for a padding oracle --------------------------------------------------------------

PROBE_TEXT = "CBC probe 7d2a: the page may not learn a byte of this"
PROBE_HTML = (
    f'<p>{PROBE_TEXT} <b>bold</b></p><img src="https://tracker.example/pixel.gif" alt="pixel">'
)


@dataclass(frozen=True)
class Probes:
    """An unsigned AES-256-CBC message from `openssl cms` (a peer) to bob, and two alterations
    of its last ciphertext blocks: one whose padding still holds (it decrypts to garbage) and
    one whose padding fails. A padding oracle is the difference between the last two."""

    original: bytes
    padding_holds: bytes
    padding_fails: bytes


def cbc_probes(bob: Any, workdir: Path, subject: str = "CBC probe") -> Probes:
    """Probes for bob (a people.BrowserPerson), made with the openssl CLI."""
    address = bob.address
    keystore = bob.keystore()
    held = keystore.current(address, "intl")
    assert held is not None and held.certificate is not None
    workdir.mkdir(parents=True, exist_ok=True)
    cert = workdir / "bob.der"
    cert.write_bytes(held.certificate.dump())
    pem = workdir / "bob.pem"
    subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", cert, "-out", pem], check=True
    )  # fmt: skip
    entity = workdir / "entity.eml"
    entity.write_bytes(
        b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + PROBE_TEXT.encode() + b"\r\n"
        b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + PROBE_HTML.encode() + b"\r\n"
        b"--b1--\r\n"
    )
    original = subprocess.run(
        ["openssl", "cms", "-encrypt", "-aes-256-cbc", "-in", entity,
         "-from", "mallory@example.test", "-to", address, "-subject", subject, pem],
        check=True, capture_output=True,
    ).stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # fmt: skip
    pairs = keystore.decryption_pairs()
    holds = fails = None
    for value in range(1, 256):
        altered = _flip_padding(original, value)
        layer = mime.unwrap(altered)
        assert layer.der is not None
        try:
            enveloped.decrypt(layer.der, pairs)
            holds = holds or altered
        except PkiError:
            fails = fails or altered
        if holds and fails:
            break
    assert holds is not None and fails is not None, "no padding that holds or fails"
    return Probes(original, holds, fails)


def _flip_padding(raw: bytes, value: int) -> bytes:
    from asn1crypto import cms

    head, _, body = raw.partition(b"\r\n\r\n")
    info = cms.ContentInfo.load(base64.b64decode(b"".join(body.split())))
    eci = info["content"]["encrypted_content_info"]
    data = bytearray(eci["encrypted_content"].native)
    data[-17] ^= value  # the last byte of the previous block: XORed into the padding byte
    eci["encrypted_content"] = bytes(data)
    encoded = base64.encodebytes(info.dump(force=True)).replace(b"\n", b"\r\n")
    return head + b"\r\n\r\n" + encoded


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def wait_until_answered(person: Any, op: str, offset: int, timeout: float = 30.0) -> int:
    """How many `op` calls person's host received after offset, once every one was answered
    (the host logs each call and its answer; a call still running is waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        ops, done = host_ops(person, op, offset)
        if len(done) >= len(ops):
            return len(ops)
        if time.monotonic() > deadline:
            raise AssertionError(f"{op} calls never all answered: {ops, done}")
        time.sleep(0.05)  # polling the host's log, bounded by the deadline
