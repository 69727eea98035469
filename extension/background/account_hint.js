// The signed-in webmail address, reported by a content script so onboarding need not ask for
// it. Only the address is kept (in chrome.storage.session): never the rest of the page title
// or label, and nothing that the page could use to reach the host.

export const ACCOUNT_HINT = 'autosmime.accountHint';
export const HINT_KEY = 'accountHint';

const ADDRESS = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+/;

/**
 * The address in Gmail's page title ("Inbox - alice@example.test - Gmail") or in the account
 * button's aria-label ("Google Account: Alice (alice@example.test)"); null when none is there.
 */
export function addressFromWebmail({ title, label } = {}) {
  for (const text of [label, title]) {
    if (typeof text !== 'string' || text.length > 1000) continue;
    const found = text.match(ADDRESS);
    if (found) return found[0].toLowerCase();
  }
  return null;
}

export function installAccountHints(runtime, storage) {
  runtime.onMessage.addListener((message, sender) => {
    if (!message || message.type !== ACCOUNT_HINT || sender.id !== runtime.id) return false;
    const address = addressFromWebmail(message);
    if (address && storage) {
      let origin = null;
      try { origin = new URL(sender.url).origin; } catch { /* not a URL: keep the address only */ }
      storage.set({ [HINT_KEY]: { address, origin, seen: Date.now() } });
    }
    return false;
  });
}
