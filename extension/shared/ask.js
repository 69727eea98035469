// The one way every part of the extension outside the service worker asks it something: content
// scripts (a classic script listed before them in the manifest) and our own pages (ui/common.js
// imports this file for its effect). Both get globalThis.autosmimeAsk: in a content script that
// global lives in the extension's isolated world, where the webmail page cannot reach it.
(() => {
  if (globalThis.autosmimeAsk) return;
  const runtime = globalThis.browser?.runtime ?? globalThis.chrome?.runtime;

  /** A refusal or failure from the worker or the host: `code` is the protocol's error code. */
  class RequestError extends Error {
    constructor(error) {
      super(error?.message ?? 'Unknown error.');
      this.name = 'RequestError';
      this.code = error?.code ?? 'internal';
    }
  }

  /** Sends one message to the worker; resolves with its `result`, rejects with a RequestError. */
  async function call(message) {
    let answer;
    try {
      answer = await runtime.sendMessage(message);
    } catch (error) {
      throw new RequestError({ code: 'host_unavailable', message: String(error?.message ?? error) });
    }
    if (!answer) throw new RequestError({ code: 'host_unavailable', message: 'The extension did not answer.' });
    if (answer.ok === true) return answer.result;
    throw new RequestError(answer.error);
  }

  /** One host operation (the worker decides whether this sender may ask for it). */
  function ask(op, params = {}) {
    return call({ type: 'autosmime.request', op, params });
  }

  globalThis.autosmimeAsk = Object.freeze({ ask, call, RequestError });
})();
