// Chunking of native messages, the JavaScript twin of native_host/protocol.py.
// A message whose UTF-8 JSON is larger than one frame allows travels as chunk events
// {id, event: "chunk", seq, count, data}, data being base64 of at most chunkRawBytes bytes.
// Pure functions: the limits come in as arguments so that Node's test runner can use them.

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function bytesToBase64(bytes) {
  if (typeof bytes.toBase64 === 'function') return bytes.toBase64();
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function base64ToBytes(text) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The frames that carry message: the message itself if it fits in maxFrame bytes, else chunks. */
export function splitMessage(message, { maxFrame, chunkRawBytes }) {
  const body = encoder.encode(JSON.stringify(message));
  if (body.length <= maxFrame) return [message];
  const count = Math.ceil(body.length / chunkRawBytes);
  const frames = [];
  for (let seq = 0; seq < count; seq += 1) {
    const piece = body.subarray(seq * chunkRawBytes, (seq + 1) * chunkRawBytes);
    frames.push({ id: message.id, event: 'chunk', seq, count, data: bytesToBase64(piece) });
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
    const piece = base64ToBytes(data);
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
