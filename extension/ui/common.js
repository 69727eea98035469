// Shared helpers of the extension's own pages (popup, onboarding, options): asking the host
// through the service worker, long requests with progress, configuration, and showing errors.

import '../shared/ask.js';
import { describeError, progressPercent } from './messages.js';

const ext = globalThis.browser ?? globalThis.chrome;
export const LONG_REQUEST_PORT = 'autosmime.long-request';

/** Ask the host for op (short requests); resolves with the result, rejects with RequestError. */
export const { ask: request, RequestError } = globalThis.autosmimeAsk;

/**
 * A long request over its own runtime Port: onProgress({done, total, stage}) for every
 * progress event of the host, then the result (or a RequestError).
 */
export function longRequest(op, params = {}, { onProgress } = {}) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const port = ext.runtime.connect({ name: LONG_REQUEST_PORT });
    port.onMessage.addListener((message) => {
      if (message?.event === 'progress') {
        onProgress?.(message);
        return;
      }
      settled = true;
      if (message?.ok) resolve(message.result);
      else reject(new RequestError(message?.error));
    });
    port.onDisconnect.addListener(() => {
      if (!settled) reject(new RequestError({ code: 'host_unavailable', message: 'The extension stopped before answering.' }));
    });
    port.postMessage({ type: 'autosmime.request', op, params });
  });
}

/**
 * Settings an administrator or installer provided: chrome.storage.managed (policy), then
 * chrome.storage.local "config": {pkiUrl, pkiRoots, imapUrl, smtpUrl, caFile}.
 */
export async function loadConfig() {
  const found = {};
  for (const area of [ext.storage?.local, ext.storage?.managed]) {
    try {
      const { config } = (await area?.get('config')) ?? {};
      if (config && typeof config === 'object') Object.assign(found, config);
    } catch { /* no managed storage schema: nothing configured there */ }
  }
  return found;
}

/** The webmail address a content script saw (address only), or null. */
export async function detectedAddress() {
  try {
    const { accountHint } = (await ext.storage?.session?.get('accountHint')) ?? {};
    return accountHint?.address ?? null;
  } catch {
    return null;
  }
}

/** The last automatic renewal report (background/renewal.js), or null. */
export async function lastRenewal() {
  try {
    return (await ext.storage?.local?.get('renewal'))?.renewal ?? null;
  } catch {
    return null;
  }
}

export async function getPreference(name, fallback) {
  const stored = (await ext.storage?.local?.get('preferences'))?.preferences ?? {};
  return stored[name] ?? fallback;
}

export async function setPreference(name, value) {
  const stored = (await ext.storage?.local?.get('preferences'))?.preferences ?? {};
  await ext.storage.local.set({ preferences: { ...stored, [name]: value } });
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** Create an element with text and attributes (never innerHTML). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children) node.append(child);
  return node;
}

/** Show a host error in box (role=alert): what happened, the host's detail, what to do next. */
export function showError(box, error, context = {}) {
  const { code, title, detail, next } = describeError(error, context);
  box.replaceChildren(
    el('p', { class: 'error-title', text: title }),
    ...(detail ? [el('p', { class: 'error-detail', text: detail })] : []),
    el('p', { class: 'error-next', text: next }),
  );
  box.dataset.code = code;
  box.hidden = false;
  box.focus?.();
}

export function clearError(box) {
  box.replaceChildren();
  delete box.dataset.code;
  box.hidden = true;
}

/** Move a <progress> and its label to a progress event. */
export function showProgress(bar, label, event) {
  bar.max = 100;
  bar.value = progressPercent(event);
  bar.setAttribute('aria-valuetext', event.stage ?? '');
  label.textContent = event.stage ?? '';
}

export function openPage(path) {
  return ext.tabs.create({ url: ext.runtime.getURL(path) });
}

export function openOptions() {
  return ext.runtime.openOptionsPage();
}
