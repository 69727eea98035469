// Content script for Gmail. For now it proves the whole path: it asks the service worker for
// `hello`, the worker asks the native host, and the answer shows in a small badge on the page.
// The badge lives in a shadow root so the page's styles and scripts leave it alone.
(() => {
  if (globalThis.__autosmimeContentLoaded) return;
  globalThis.__autosmimeContentLoaded = true;

  const runtime = globalThis.browser?.runtime ?? chrome.runtime;

  function ask(op, params = {}) {
    return runtime.sendMessage({ type: 'autosmime.request', op, params }).then((reply) => {
      if (!reply || reply.ok !== true) {
        const error = new Error(reply?.error?.message ?? 'No answer from the extension.');
        error.code = reply?.error?.code ?? 'internal';
        throw error;
      }
      return reply.result;
    });
  }

  function makeBadge() {
    const holder = document.createElement('autosmime-status');
    const shadow = holder.attachShadow({ mode: 'open' });
    const style = document.createElement('style');
    style.textContent = ':host{position:fixed;bottom:8px;right:8px;z-index:2147483647;font:12px sans-serif}'
      + ' span{background:#fff;border:1px solid #999;border-radius:4px;padding:2px 6px}'
      + ' span[data-state=ok]{border-color:#2a7}span[data-state=error]{border-color:#c33}';
    const text = document.createElement('span');
    text.setAttribute('data-state', 'pending');
    text.textContent = 'autosmime: connecting…';
    shadow.append(style, text);
    document.documentElement.append(holder);
    return text;
  }

  const badge = makeBadge();
  ask('hello').then(
    (hello) => {
      badge.setAttribute('data-state', 'ok');
      badge.textContent = `autosmime: host ${hello.version} ready (protocol ${hello.protocol})`;
    },
    (error) => {
      badge.setAttribute('data-state', 'error');
      badge.textContent = `autosmime: the native host is not available (${error.code}). Run "autosmime doctor".`;
    },
  );
})();
