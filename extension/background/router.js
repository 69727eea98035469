// Requests from content scripts and extension pages, checked before anything reaches the host.
// The webmail page is hostile: content scripts may ask only for the ops listed here.

export const CONTENT_SCRIPT_OPS = new Set(['hello', 'echo']);

export function validateRequest(message) {
  if (!message || typeof message !== 'object' || message.type !== 'autosmime.request') {
    return 'not an autosmime request';
  }
  if (typeof message.op !== 'string' || message.op.length === 0) return 'op must be a non-empty string';
  if (message.params !== undefined && (typeof message.params !== 'object' || message.params === null || Array.isArray(message.params))) {
    return 'params must be an object';
  }
  return null;
}

/** Whether sender may ask for op: extension pages may ask for anything, content scripts for a few. */
export function senderMayAsk(sender, op, extensionId, extensionBaseUrl) {
  if (sender.id !== extensionId) return false;
  const fromExtensionPage = typeof sender.url === 'string' && sender.url.startsWith(extensionBaseUrl);
  if (fromExtensionPage && !sender.tab) return true;
  return CONTENT_SCRIPT_OPS.has(op);
}

export function installRouter(runtime, nativePort) {
  runtime.onMessage.addListener((message, sender, sendResponse) => {
    const problem = validateRequest(message);
    if (problem) {
      sendResponse({ ok: false, error: { code: 'bad_request', message: problem } });
      return false;
    }
    if (!senderMayAsk(sender, message.op, runtime.id, runtime.getURL(''))) {
      sendResponse({ ok: false, error: { code: 'forbidden_origin', message: `This page may not ask for ${message.op}.` } });
      return false;
    }
    nativePort.request(message.op, message.params ?? {}).then(
      (result) => sendResponse({ ok: true, result }),
      (error) => sendResponse({ ok: false, error: { code: error.code ?? 'internal', message: error.message } }),
    );
    return true;
  });
}
