// The extension's service worker: one native port, one router. Tests reach both through
// globalThis.autosmime (the service worker's own global; pages cannot see it).

import { NativePort } from './native_port.js';
import { PROTOCOL, HOST_NAME } from './protocol.js';
import { installRouter } from './router.js';

const api = globalThis.browser?.runtime ?? chrome.runtime;
const nativePort = new NativePort(HOST_NAME, PROTOCOL, (name) => api.connectNative(name));
installRouter(api, nativePort);

globalThis.autosmime = { nativePort, request: (op, params, options) => nativePort.request(op, params, options) };
