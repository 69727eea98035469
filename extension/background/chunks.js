// Chunking of native messages, the JavaScript twin of native_host/protocol.py.
// A message whose UTF-8 JSON is larger than one frame allows travels as chunk events
// {id, event: "chunk", seq, count, data}, data being base64 of at most chunkRawBytes bytes.
// Pure functions: the limits come in as arguments so that Node's test runner can use them.
// Base64 is the platform's (Uint8Array.prototype.toBase64, Uint8Array.fromBase64: Chromium 140,
// Firefox 133; tests/extension/base64.mjs adds them to older Node).

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** The frames that carry message: the message itself if it fits in maxFrame bytes, else chunks. */
export function splitMessage(message, { maxFrame, chunkRawBytes }) {
  const body = encoder.encode(JSON.stringify(message));
  if (body.length <= maxFrame) return [message];
  const count = Math.ceil(body.length / chunkRawBytes);
  const frames = [];
  for (let seq = 0; seq < count; seq += 1) {
    const piece = body.subarray(seq * chunkRawBytes, (seq + 1) * chunkRawBytes);
    frames.push({ id: message.id, event: 'chunk', seq, count, data: piece.toBase64() });
  }
  return frames;
}

export class ChunkError extends Error {
  constructor(message, id) {
    super(message);
    this.code = 'bad_chunk';
    this.id = id;
  }
}

/** Joins chunk events back into whole messages, one partial message per id. */
export class ChunkAssembler {
  constructor({ maxMessageBytes }) {
    this.maxMessageBytes = maxMessageBytes;
    this.partial = new Map();
  }

  /** Take one chunk; return the whole message (parsed) when its last chunk arrives, else null. */
  add({ id, seq, count, data }) {
    let entry = this.partial.get(id);
    if (!entry) {
      entry = { count, parts: [], size: 0 };
      this.partial.set(id, entry);
    }
    const fail = (why) => {
      this.partial.delete(id);
      throw new ChunkError(why, id);
    };
    if (!Number.isInteger(seq) || !Number.isInteger(count) || typeof data !== 'string') {
      fail('A chunk lacks seq, count or data.');
    }
    if (count !== entry.count) fail('Chunks of one message disagree on their count.');
    if (seq !== entry.parts.length) fail(`Chunk ${seq} arrived where ${entry.parts.length} was expected.`);
    let piece = null;
    try {
      piece = Uint8Array.fromBase64(data);
    } catch {
      fail('A chunk\'s data is not base64.');
    }
    entry.size += piece.length;
    if (entry.size > this.maxMessageBytes) fail('A chunked message grew past the size limit.');
    entry.parts.push(piece);
    if (entry.parts.length < count) return null;
    this.partial.delete(id);
    const whole = new Uint8Array(entry.size);
    let offset = 0;
    for (const part of entry.parts) {
      whole.set(part, offset);
      offset += part.length;
    }
    return JSON.parse(decoder.decode(whole));
  }

  discard(id) {
    this.partial.delete(id);
  }

  get pending() {
    return this.partial.size;
  }
}
