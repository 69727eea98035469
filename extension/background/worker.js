// The extension's service worker: one native port, one router. Tests reach both through
// globalThis.autosmime (the service worker's own global; pages cannot see it).

import { NativePort } from './native_port.js';
import { PROTOCOL, HOST_NAME } from './protocol.js';
import { installLongRequests, installRouter } from './router.js';
import { installAccountHints } from './account_hint.js';
import { installDailyRenewal } from './renewal.js';
import { installSecureFrames } from './secure_frames.js';

const api = globalThis.browser?.runtime ?? chrome.runtime;
const nativePort = new NativePort(HOST_NAME, PROTOCOL, (name) => api.connectNative(name));
installRouter(api, nativePort);
installLongRequests(api, nativePort);
const secureFrames = installSecureFrames(api, (globalThis.browser ?? chrome).tabs, nativePort);
installAccountHints(api, (globalThis.browser ?? globalThis.chrome)?.storage?.session);
const renewNow = installDailyRenewal(
  (globalThis.browser ?? globalThis.chrome)?.alarms,
  (globalThis.browser ?? globalThis.chrome)?.storage?.local,
  (op, params) => nativePort.request(op, params),
);

// First run: open the setup page once, when the extension is installed.
api.onInstalled?.addListener((details) => {
  if (details.reason === 'install') {
    (globalThis.browser ?? chrome).tabs.create({ url: api.getURL('ui/onboarding.html') });
  }
});

globalThis.autosmime = {
  nativePort,
  request: (op, params, options) => nativePort.request(op, params, options),
  renewNow,
  secureFrames,
};
