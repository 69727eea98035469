// Unit tests of the extension's pure chunking and port logic (Node's built-in test runner).
import './base64.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ChunkAssembler, ChunkError, splitMessage } from '../../extension/background/chunks.js';

const protocol = JSON.parse(readFileSync(new URL('../../native_host/protocol.json', import.meta.url), 'utf-8'));
const limits = { maxFrame: protocol.limits.maxHostToBrowserFrame, chunkRawBytes: protocol.limits.chunkRawBytes };

test('a small message travels as itself', () => {
  const message = { id: 1, op: 'echo', params: { payload: 'hi' } };
  assert.deepEqual(splitMessage(message, limits), [message]);
});

test('a large message with non-ASCII text is chunked within the frame limit and reassembled exactly', () => {
  const payload = 'ä€😀x'.repeat(400_000);
  const message = { id: 'big', op: 'echo', params: { payload } };
  const frames = splitMessage(message, limits);
  assert.ok(frames.length > 2);
  for (const frame of frames) {
    assert.equal(frame.event, 'chunk');
    assert.ok(new TextEncoder().encode(JSON.stringify(frame)).length <= protocol.limits.maxHostToBrowserFrame);
  }
  const assembler = new ChunkAssembler(protocol.limits);
  let whole = null;
  for (const frame of frames) whole = assembler.add(frame);
  assert.deepEqual(whole, message);
  assert.equal(assembler.pending, 0);
});

test('out-of-order, miscounted and oversize chunks are refused and forgotten', () => {
  const frames = splitMessage({ id: 7, op: 'echo', params: { payload: 'y'.repeat(1_200_000) } }, limits);
  const assembler = new ChunkAssembler(protocol.limits);
  assert.throws(() => assembler.add(frames[1]), ChunkError);
  assert.equal(assembler.pending, 0);
  assembler.add(frames[0]);
  assert.throws(() => assembler.add({ ...frames[1], count: 99 }), /disagree/);
  const small = new ChunkAssembler({ maxMessageBytes: 10 });
  assert.throws(() => small.add(frames[0]), /size limit/);
});

test('a chunk whose data is not base64 is refused', () => {
  const [first] = splitMessage({ id: 9, op: 'echo', params: { payload: 'x'.repeat(3_000_000) } }, limits);
  assert.throws(() => new ChunkAssembler({ maxMessageBytes: 1e9 }).add({ ...first, data: '***' }), ChunkError);
});
