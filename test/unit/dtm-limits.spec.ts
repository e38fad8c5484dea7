// What the module sends within DTM's SQL-store limits (varchar(1024), counted in characters), and
// which 500 answers of DTM are definite refusals rather than "may pass if sent again".
import { describe, expect, it } from '@jest/globals';
import { DtmServerError } from '../../lib/errors/dtm-server.error.js';
import { cutToFit, cutToStore, DTM_TEXT_MAX } from '../../lib/transport/dtm-limits.js';
import { definiteServerRefusal } from '../../lib/transport/dtm-refusal.js';
import { isTransientDtmError, markBranchStatus, mayHaveReachedDtm } from '../../lib/transport/dtm-transient.js';

describe('cutToStore', () => {
  it('keeps a text of at most 1024 characters as it is, 4-byte characters counted as one', () => {
    expect(cutToStore('x'.repeat(1024))).toBe('x'.repeat(1024));
    expect(cutToStore('😀'.repeat(1024))).toBe('😀'.repeat(1024)); // 2048 UTF-16 units, 1024 characters
  });

  it('cuts a longer one to 1024 characters ending with …, never inside a surrogate pair', () => {
    const cut = cutToStore(`a${'😀'.repeat(2000)}`);
    expect(Array.from(cut)).toHaveLength(DTM_TEXT_MAX);
    expect(cut.endsWith('😀…')).toBe(true);
    expect(cut).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
  });
});

describe('cutToFit (a saga action\'s FAILURE reason, as its answer\'s JSON body is measured)', () => {
  /** Code points of the 409 body made of `reason` (JSON escapes count). */
  const bodyLength = (reason: string) => Array.from(JSON.stringify({ dtm_result: 'FAILURE', message: reason })).length;

  it('keeps a reason that fits', () => {
    expect(cutToFit('card declined', 800, bodyLength)).toBe('card declined');
  });

  it("cuts a reason of quotes and backslashes, whose escapes make its body longer than twice its length (before: sent whole, over DTM's 1024 characters)", () => {
    for (const reason of ['"'.repeat(2000), '\\'.repeat(2000), `say ${'\u0001'.repeat(3000)}`]) {
      const cut = cutToFit(reason, 800, bodyLength);
      expect(bodyLength(cut)).toBeLessThanOrEqual(800);
      expect(bodyLength(cut)).toBeGreaterThan(700);
      expect(cut.endsWith('…')).toBe(true);
      expect(reason.startsWith(cut.slice(0, -1))).toBe(true);
    }
  });

  it('measures a reason of megabytes by its start only (before: the whole text, twice, blocking the event loop for seconds), and keeps as much of it', () => {
    const measured: number[] = [];
    const reason = `${'declined; '.repeat(900_000)}end`; // 9 MB
    const cut = cutToFit(reason, 800, (text) => (measured.push(text.length), bodyLength(text)));
    expect(Math.max(...measured)).toBeLessThanOrEqual(4 * 800);
    expect(bodyLength(cut)).toBeLessThanOrEqual(800);
    expect(bodyLength(cut)).toBeGreaterThan(790);
    expect(reason.startsWith(cut.slice(0, -1))).toBe(true);
  });
});

describe('definiteServerRefusal', () => {
  const http500 = (body: string) => new DtmServerError('answered HTTP 500', body, { protocol: 'http', status: 500 });

  it.each([
    ['{"message":"topic not found"}', /subscribe the topic/],
    ['{"message":"Error 1406 (22001): Data too long for column \'options\' at row 1"}', /branch header/],
    ['{"message":"ERROR: value too long for type character varying(1024) (SQLSTATE 22001)"}', /character varying\(1024\)/],
  ])('%s: a refusal, not transient', (body, named) => {
    const refused = definiteServerRefusal(body);
    expect(`${refused?.cause} ${refused?.fix}`).toMatch(named);
    expect(isTransientDtmError(http500(body))).toBe(false);
    expect(mayHaveReachedDtm(http500(body))).toBe(false);
  });

  it('any other 500 may pass if sent again', () => {
    expect(definiteServerRefusal('{"message":"storage: connection refused"}')).toBeUndefined();
    expect(isTransientDtmError(http500('{"message":"i/o timeout"}'))).toBe(true);
  });
});

describe('isTransientDtmError over gRPC (DTM answers a plain error UNKNOWN, as HTTP 500)', () => {
  const grpc = (code: number, detail: string) => new DtmServerError(`answered gRPC status ${code}`, detail, { protocol: 'grpc', status: code });

  it('UNKNOWN and INTERNAL may pass if sent again (DTM may have acted); DTM\'s definite refusals stay definite', () => {
    expect(isTransientDtmError(grpc(2, 'i/o timeout'))).toBe(true);
    expect(isTransientDtmError(grpc(13, 'boom'))).toBe(true);
    expect(mayHaveReachedDtm(grpc(2, 'i/o timeout'))).toBe(true);
    expect(isTransientDtmError(grpc(2, 'topic not found'))).toBe(false);
  });

  it('other codes are definite, unless marked as a branch\'s status passed on to a submit with waitResult', () => {
    for (const code of [3, 5, 7, 8, 12, 16]) expect(isTransientDtmError(grpc(code, 'refused'))).toBe(false);
    const passedOn = grpc(3, 'invalid argument');
    markBranchStatus(passedOn);
    expect(isTransientDtmError(passedOn)).toBe(true);
  });
});
