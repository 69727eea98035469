// How a secure frame (editor, viewer) reaches the extension. Its URL carries nothing: the content
// script that placed it posts it one secret (targetOrigin: the extension), the frame claims that
// secret over a runtime Port, and from then on the worker speaks to it over that port only
// (background/secure_frames.js). The frame never posts anything to the webmail page and acts on
// no window message but the claim; a frame nobody registered (one the page made itself, or this
// one reloaded) never binds, so it shows nothing and asks for nothing.

const runtime = globalThis.browser?.runtime ?? globalThis.chrome?.runtime;

export const SECURE_FRAME_PORT = 'autosmime.secure-frame';
export const CLAIM = 'autosmime.claim';
const MAX_CLAIMS = 32;
const KEEPALIVE_MS = 20_000;

/**
 * The webmail origins that may frame the secure editor and viewer: those the manifest makes
 * them web accessible to (Gmail, and the Roundcube addresses an organisation built in with
 * build.py --roundcube).
 */
export function webmailOrigins(manifest) {
  const origins = new Set();
  for (const entry of manifest?.web_accessible_resources ?? []) {
    for (const pattern of entry.matches ?? []) {
      const match = /^(https?:\/\/[^/*]+)\/\*$/.exec(pattern);
      if (match) origins.add(match[1]);
    }
  }
  return [...origins];
}

export const ALLOWED_PARENT_ORIGINS = runtime?.getManifest
  ? webmailOrigins(runtime.getManifest())
  : ['https://mail.google.com'];

/**
 * The secret of a claim hand-off, or null: posted by the parent window, from a webmail origin,
 * shaped like a secret. (The page can post the same shape; the worker binds only real ones.)
 */
export function claimedSecret(event, parentWindow, allowed = ALLOWED_PARENT_ORIGINS) {
  const data = event?.data;
  if (event?.source !== parentWindow || !allowed.includes(event.origin)) return null;
  if (data?.autosmime !== CLAIM || typeof data.secret !== 'string') return null;
  return /^[0-9a-f]{64}$/.test(data.secret) ? data.secret : null;
}

/**
 * Opens this frame's port and claims whatever secret the parent hands over. onMessage gets every
 * message of the worker once bound ({type: 'bound', ...} first), {type: 'refused'} for a claim
 * the worker would not bind, and {type: 'disconnected'} at the end.
 * With waitUnbound (the viewer, which the content script may load ahead as a spare before any
 * message is opened), a port the quiet worker closed before a claim bound is no end: the next
 * claim opens a new one (and wakes the worker) instead of a wake-up loop keeping it alive.
 * Returns {post} (to the worker), or null outside a frame.
 */
export function connectSecureFrame(onMessage, { waitUnbound = false } = {}) {
  if (window.parent === window || !runtime?.connect) return null;
  let port = null;
  let bound = false;
  let claims = 0;
  let keepalive = null;
  const open = () => {
    const opened = runtime.connect({ name: SECURE_FRAME_PORT });
    opened.onMessage.addListener((message) => {
      if (message?.type === 'bound' && !bound) {
        bound = true;
        window.removeEventListener('message', onWindowMessage);
        // A quiet service worker may be stopped, which would cut this port: keep it talking.
        keepalive = setInterval(() => opened.postMessage({ type: 'ping' }), KEEPALIVE_MS);
      }
      if (bound || message?.type === 'refused') onMessage(message);
    });
    opened.onDisconnect.addListener(() => {
      if (port !== opened) return;
      port = null;
      if (waitUnbound && !bound && claims <= MAX_CLAIMS) return;
      clearInterval(keepalive);
      window.removeEventListener('message', onWindowMessage);
      onMessage({ type: 'disconnected', wasBound: bound });
    });
    return opened;
  };
  const onWindowMessage = (event) => {
    const secret = claimedSecret(event, window.parent);
    if (bound || !secret) return;
    claims += 1;
    if (claims > MAX_CLAIMS) window.removeEventListener('message', onWindowMessage);
    else {
      port ??= open();
      port.postMessage({ type: 'claim', secret });
    }
  };
  window.addEventListener('message', onWindowMessage);
  port = open();
  return { post: (message) => { if (bound) port?.postMessage(message); } };
}
