// A payload's JSON text: how HTTP branches receive it, whichever protocol the transaction uses.
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import type { Payload } from './dtm.types.js';
import { messageOf } from '../errors/text-of.js';

/**
 * A branch payload as an HTTP branch receives it: a string, never empty (DTM would call the branch
 * with GET). Objects, arrays, numbers and booleans are JSON-encoded once; strings pass as they are;
 * bytes must be UTF-8; `undefined` becomes `{}` and `null` the JSON text `null` (as DTM's Go SDK sends).
 */
export function payloadText(payload: Payload, gid?: string): string {
  if (payload === undefined) return '{}';
  if (typeof payload === 'string') {
    if (payload === '') throw new DtmUsageError(MESSAGES.emptyPayload(), { gid });
    return payload;
  }
  if (payload instanceof Uint8Array) {
    const bytes = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    const text = bytes.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(bytes)) throw new DtmUsageError(MESSAGES.bufferNotUtf8(), { gid });
    if (text === '') throw new DtmUsageError(MESSAGES.emptyPayload(), { gid });
    return text;
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(payload);
  } catch (err) {
    throw new DtmUsageError(MESSAGES.payloadNotSerializable(messageOf(err)), { gid, cause: err });
  }
  if (text === undefined) throw new DtmUsageError(MESSAGES.payloadNotSerializable(`${typeof payload} has no JSON form`), { gid });
  return text;
}

/**
 * Parses a body leniently (a branch's or DTM's answer, a branch body DTM replays): empty →
 * undefined; any JSON value (objects, arrays, the `null` Go services send, strings, numbers) → that
 * value; anything else → the text.
 */
export function parseAnswer(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
