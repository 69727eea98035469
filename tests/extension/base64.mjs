// Uint8Array.prototype.toBase64 and Uint8Array.fromBase64, which the extension takes from the
// browser (Chromium 140+, Firefox 133+), for a Node that lacks them. Imported first by the
// tests whose modules use base64.
import { Buffer } from 'node:buffer';

if (typeof Uint8Array.prototype.toBase64 !== 'function') {
  Object.defineProperty(Uint8Array.prototype, 'toBase64', {
    value() { return Buffer.from(this.buffer, this.byteOffset, this.byteLength).toString('base64'); },
  });
}
if (typeof Uint8Array.fromBase64 !== 'function') {
  Object.defineProperty(Uint8Array, 'fromBase64', {
    value(text) {
      if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text.replace(/\s/g, ''))) {
        throw new SyntaxError('not base64');
      }
      return new Uint8Array(Buffer.from(text, 'base64'));
    },
  });
}
