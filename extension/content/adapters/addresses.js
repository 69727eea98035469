// Mail addresses as every site adapter reads them from the page: a classic content script loaded
// before the adapters, registering its helpers on globalThis.autosmimeAddresses.
(() => {
  const EMAIL = /^[^\s@<>]+@[^\s@<>]+$/;

  /** Addresses, lower-cased, deduplicated, order kept; anything that is not one is dropped. */
  function uniqueAddresses(values) {
    const seen = new Set();
    const out = [];
    for (const raw of values) {
      const value = String(raw ?? '').trim().toLowerCase();
      if (EMAIL.test(value) && !seen.has(value)) {
        seen.add(value);
        out.push(value);
      }
    }
    return out;
  }

  globalThis.autosmimeAddresses = Object.freeze({ EMAIL, uniqueAddresses });
})();
