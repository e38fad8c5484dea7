// What the module says of a thrown value that is not an Error (anything can be thrown), String() of which may throw.
import { describe, expect, it } from '@jest/globals';
import { DtmWorkflowPendingError } from 'nestjs-dtm';
import { messageOf, textOf } from '../../lib/errors/text-of.js';
import { safeCause } from '../../lib/redact.js';

const circular: Record<string, unknown> = { name: 'loop' };
circular.self = circular;

/** Values String() cannot convert: it throws (a TypeError, or what toString throws). */
const UNCONVERTIBLE: [string, unknown][] = [
  ['an object without a prototype', Object.create(null)],
  ['an object whose toString throws', { toString: () => { throw new Error('toString broke'); } }],
  ['an object whose toString answers an object', { toString: () => ({}), valueOf: () => ({}) }],
  ['an object whose Symbol.toPrimitive throws', { [Symbol.toPrimitive]: () => { throw new RangeError('no'); } }],
];

describe('textOf / messageOf', () => {
  it.each(UNCONVERTIBLE)('%s: says it cannot be converted, never throws', (_, value) => {
    expect(() => String(value)).toThrow();
    expect(textOf(value)).toBe('a value that cannot be converted to text');
    expect(messageOf(value)).toBe('a value that cannot be converted to text');
  });

  it('values String() converts read as String() reads them: a Symbol, a BigInt, undefined, null, a circular object', () => {
    expect([Symbol('s'), 10n, undefined, null, circular, 'text'].map(textOf)).toEqual(['Symbol(s)', '10', 'undefined', 'null', '[object Object]', 'text']);
  });

  it("an Error's message", () => {
    expect(messageOf(new TypeError('bad'))).toBe('bad');
  });
});

describe('the errors made of a thrown value', () => {
  it.each(UNCONVERTIBLE)("a workflow that threw %s is pending, its message saying so (before: the error's constructor threw a TypeError)", (_, value) => {
    const error = new DtmWorkflowPendingError('orders.v1', 'g1', value);
    expect(error.message).toBe('workflow "orders.v1" (gid g1) is not finished (it threw a value that cannot be converted to text, no Error); DTM will call the app back to resume it: await it again with executeWorkflow(), or query the gid later');
    expect(error.cause).toBe(value);
  });

  it.each(UNCONVERTIBLE)('the stand-in cause of an HTTP client error that is %s', (_, value) => {
    expect(safeCause(value).message).toBe('a value that cannot be converted to text');
  });
});
