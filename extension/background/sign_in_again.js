// "Sign in again": when the host says a mail provider's sign-in expired or was revoked
// (sign_in_required), the compose controls offer a button that opens the setup page to sign in
// again for that address. Only a content script of ours asks (on a person's trusted click), and
// all it gets is a tab of our own setup page; nothing comes back to the webmail.

export const SIGN_IN_AGAIN = 'autosmime.signInAgain';
const ADDRESS = /^[^\s@<>"]{1,64}@[^\s@<>"]{1,255}$/;

/** The setup page URL that signs address in again (address dropped when it is not one). */
export function signInAgainUrl(runtime, address) {
  const query = new URLSearchParams({ signin: ADDRESS.test(String(address ?? '')) ? address : '' });
  return runtime.getURL(`ui/onboarding.html?${query}`);
}

export function installSignInAgain(runtime, tabs) {
  runtime.onMessage.addListener((message, sender, sendResponse) => {
    if (message?.type !== SIGN_IN_AGAIN) return false;
    if (sender.id !== runtime.id || !sender.tab) {
      sendResponse({ ok: false, error: { code: 'forbidden_origin', message: 'Only the compose controls ask for this.' } });
      return false;
    }
    Promise.resolve(tabs.create({ url: signInAgainUrl(runtime, message.address) })).then(
      () => sendResponse({ ok: true, result: null }),
      (error) => sendResponse({ ok: false, error: { code: 'internal', message: String(error?.message ?? error) } }),
    );
    return true;
  });
}
