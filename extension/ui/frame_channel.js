// The channel between a secure frame (editor, viewer) and the content script that placed it.
// The frame is an extension page inside the webmail's tab: commands arrive by postMessage from
// the parent window. Everything the frame posts back is seen by the hostile page too, so it
// posts only status, never plaintext.

const runtime = globalThis.browser?.runtime ?? globalThis.chrome?.runtime;

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

/** channel and parent origin from the frame's URL fragment, or null when they are not valid. */
export function parseFrameParams(hash, ancestorOrigin = null, allowed = ALLOWED_PARENT_ORIGINS) {
  const params = new URLSearchParams(String(hash ?? '').replace(/^#/, ''));
  const channel = params.get('channel');
  const origin = params.get('origin');
  if (!channel || !/^[0-9a-f-]{36}$/i.test(channel)) return null;
  if (!allowed.includes(origin)) return null;
  if (ancestorOrigin && ancestorOrigin !== origin) return null;
  return { channel, origin };
}

/** Whether a message event is a command for this frame. */
export function isCommand(event, parentWindow, params) {
  return event.source === parentWindow
    && event.origin === params.origin
    && event.data?.autosmime === 'frame-command'
    && event.data.channel === params.channel
    && typeof event.data.type === 'string';
}

export const TRUSTED_COMMAND = 'autosmime.frame-command';

/** Whether a runtime message is a command for this frame from this extension's content script. */
export function isTrustedCommand(message, sender, params, extensionId) {
  return message?.type === TRUSTED_COMMAND
    && message.channel === params.channel
    && sender?.id === extensionId
    && Boolean(sender.tab)
    && typeof message.command?.type === 'string';
}

export function connectFrame(onCommand) {
  const params = parseFrameParams(location.hash, location.ancestorOrigins?.[0] ?? null);
  if (!params || window.parent === window) return null;
  const post = (type, payload = {}) => {
    window.parent.postMessage({ autosmime: 'frame-event', channel: params.channel, type, ...payload }, params.origin);
  };
  // Commands by postMessage may come from the page itself (it can read this frame's channel):
  // they arrive marked untrusted. The content script sends the ones that act (send, encrypt)
  // through the extension's runtime messaging too, which the page cannot reach.
  window.addEventListener('message', (event) => {
    if (isCommand(event, window.parent, params)) onCommand({ ...event.data, trusted: false }, post);
  });
  runtime?.onMessage?.addListener((message, sender) => {
    if (isTrustedCommand(message, sender, params, runtime.id)) {
      onCommand({ ...message.command, trusted: true }, post);
    }
    return false;
  });
  // The body's own height: the root's scrollHeight never drops below the iframe's viewport, so a
  // frame could grow but never shrink to a one-line status strip.
  const bodyHeight = () => {
    const style = getComputedStyle(document.body);
    return Math.ceil(document.body.getBoundingClientRect().height
      + parseFloat(style.marginTop) + parseFloat(style.marginBottom));
  };
  new ResizeObserver(() => post('resize', { height: bodyHeight() })).observe(document.body);
  return post;
}

/** One host operation through the service worker (extension pages may ask for any op). */
export async function ask(op, params = {}) {
  const reply = await runtime.sendMessage({ type: 'autosmime.request', op, params });
  if (!reply || reply.ok !== true) {
    const error = new Error(reply?.error?.message ?? 'No answer from the extension.');
    error.code = reply?.error?.code ?? 'internal';
    throw error;
  }
  return reply.result;
}
