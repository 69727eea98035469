// One long-lived connection to the native host: request ids, progress events, chunking both
// ways, and a fresh connection whenever the host has died.

import { ChunkAssembler, ChunkError, splitMessage } from './chunks.js';

export class HostError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'HostError';
    this.code = code;
  }

  toJSON() {
    return { code: this.code, message: this.message };
  }
}

export class NativePort {
  /**
   * @param {string} hostName native messaging host name
   * @param {object} protocol the parsed protocol.json (limits, error codes)
   * @param {(name: string) => object} connect chrome.runtime.connectNative or a test double
   */
  constructor(hostName, protocol, connect) {
    this.hostName = hostName;
    this.limits = protocol.limits;
    this.connect = connect;
    this.port = null;
    this.nextId = 1;
    this.pending = new Map();
    this.assembler = new ChunkAssembler({ maxMessageBytes: this.limits.maxMessageBytes });
    this.connections = 0;
    this.lastDisconnect = null;
  }

  /** Ask the host for op; resolves with its result, rejects with a HostError. */
  request(op, params = {}, { onProgress } = {}) {
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      try {
        const port = this.ensurePort();
        const frames = splitMessage(
          { id, op, params },
          { maxFrame: this.limits.maxHostToBrowserFrame, chunkRawBytes: this.limits.chunkRawBytes },
        );
        for (const frame of frames) port.postMessage(frame);
      } catch (error) {
        this.pending.delete(id);
        reject(new HostError('host_unavailable', `The native host could not be reached: ${error.message}`));
      }
    });
  }

  ensurePort() {
    if (this.port) return this.port;
    const port = this.connect(this.hostName);
    port.onMessage.addListener((message) => this.onMessage(message));
    port.onDisconnect.addListener(() => this.onDisconnect(port));
    this.port = port;
    this.connections += 1;
    return port;
  }

  onMessage(message) {
    let whole = message;
    if (message && message.event === 'chunk') {
      try {
        whole = this.assembler.add(message);
      } catch (error) {
        if (error instanceof ChunkError) this.settle(error.id, new HostError(error.code, error.message));
        return;
      }
      if (whole === null) return;
    }
    if (!whole || typeof whole !== 'object') return;
    const entry = this.pending.get(whole.id);
    if (whole.event === 'progress') {
      entry?.onProgress?.({ done: whole.done, total: whole.total, stage: whole.stage });
      return;
    }
    if (whole.ok === true) {
      this.settle(whole.id, null, whole.result);
    } else if (whole.ok === false) {
      const error = new HostError(whole.error?.code ?? 'internal', whole.error?.message ?? 'Unknown error.');
      if (whole.id === null || whole.id === undefined) {
        // An error about a frame the host could not attribute (or a refused caller): nothing in
        // flight can still be trusted to get an answer.
        for (const id of [...this.pending.keys()]) this.settle(id, error);
      } else {
        this.settle(whole.id, error);
      }
    }
  }

  settle(id, error, result) {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    if (error) entry.reject(error);
    else entry.resolve(result);
  }

  onDisconnect(port) {
    if (this.port !== port) return;
    this.port = null;
    this.lastDisconnect = globalThis.chrome?.runtime?.lastError?.message ?? 'the host exited';
    const error = new HostError('host_unavailable', `The native host stopped: ${this.lastDisconnect}`);
    for (const id of [...this.pending.keys()]) {
      this.assembler.discard(id);
      this.settle(id, error);
    }
  }
}
