// What the module picks of an inbound request's headers to pass on to branches: the allow-list,
// and W3C trace context only when well-formed (DTM stores and sends whatever it is given).
import { describe, expect, it } from '@jest/globals';
import { resolveDtmConfig } from 'nestjs-dtm';
import { checkTraceContext, isValidTracestate, parseTraceparent, passThroughAllowList, pickHeaders } from '../../lib/context/dtm-context.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('pass-through headers', () => {
  it('allow-lists pass_through_headers plus trace context, or without it when pass_trace_context is false', () => {
    expect(passThroughAllowList(resolveDtmConfig({ config: { passThroughHeaders: ['X-Request-ID'] } }, {}))).toEqual(['traceparent', 'tracestate', 'x-request-id']);
    expect(passThroughAllowList(resolveDtmConfig({ config: { passThroughHeaders: ['X-Request-ID'], passTraceContext: false } }, {}))).toEqual(['x-request-id']);
  });

  it('parses a well-formed traceparent (the parent of a branch span), and nothing the pass-through would drop', () => {
    expect(parseTraceparent(TRACEPARENT)).toEqual({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', flags: 1 });
    expect(parseTraceparent('0a-0000000000000000000000000000000f-f000000000000000-ff')).toEqual({ traceId: '0000000000000000000000000000000f', spanId: 'f000000000000000', flags: 255 });
    const bad = [
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // version ff
      `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`, // trace id all zeros
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // parent id all zeros
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', // upper case
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g', // flags not hex
      '0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // version not hex
      '00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01', // not ASCII
      '00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // separator
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ', // too long
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1', // too short
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00',
      'garbage',
      '',
    ];
    for (const value of bad) {
      expect([value, parseTraceparent(value)]).toEqual([value, undefined]);
      expect([value, checkTraceContext({ traceparent: value })]).toEqual([value, undefined]);
    }
  });

  it('accepts exactly the traceparents the W3C grammar does (mutations of a valid one, one or two characters at a time)', () => {
    // the grammar of W3C Trace Context level 1, version 00's length, as a regular expression (the reference the parser is checked against)
    const W3C = /^(?!ff)[0-9a-f]{2}-((?!0{32})[0-9a-f]{32})-((?!0{16})[0-9a-f]{16})-([0-9a-f]{2})$/;
    const alphabet = ['0', '0', '0', 'f', 'a', '9', 'F', 'g', '-', ' ', 'é', '\u0000'];
    let seed = 7;
    // a 32-bit linear congruential generator (Math.imul: a float product would lose its low bits), its high bits used
    const next = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) % n;
    let accepted = 0;
    const tried = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const chars = [...(i % 3 === 0 ? `00-${'0'.repeat(31)}1-${'0'.repeat(15)}1-00` : TRACEPARENT)];
      for (let k = 0; k <= i % 2; k++) tried.add((chars[next(chars.length)] = alphabet[next(alphabet.length)]!));
      const value = chars.join('');
      const parsed = parseTraceparent(value);
      expect([value, parsed !== undefined]).toEqual([value, W3C.test(value)]);
      if (parsed) accepted++;
    }
    expect(accepted).toBeGreaterThan(500); // both sides of the grammar were tried
    expect([...tried].sort()).toEqual([...new Set(alphabet)].sort()); // every character was put in
  });

  it('picks only allow-listed headers; none is undefined', () => {
    const allow = ['traceparent', 'tracestate', 'x-request-id'];
    expect(pickHeaders({ 'x-request-id': 'r', authorization: 'Bearer x', host: 'h' }, allow)).toEqual({ 'x-request-id': 'r' });
    expect(pickHeaders({ authorization: 'Bearer x' }, allow)).toBeUndefined();
    expect(pickHeaders({ 'x-request-id': ['a', 'b'] }, allow)).toEqual({ 'x-request-id': 'a, b' });
  });

  it('keeps a well-formed traceparent and tracestate', () => {
    const allow = ['traceparent', 'tracestate'];
    expect(pickHeaders({ traceparent: TRACEPARENT, tracestate: 'congo=t61rcWkgMzE, rojo=00f067aa0ba902b7' }, allow)).toEqual({
      traceparent: TRACEPARENT,
      tracestate: 'congo=t61rcWkgMzE, rojo=00f067aa0ba902b7',
    });
    expect(pickHeaders({ traceparent: TRACEPARENT, tracestate: 'tenant@vendor=a,,b=c d' }, allow)).toEqual({ traceparent: TRACEPARENT, tracestate: 'tenant@vendor=a,,b=c d' });
  });

  it('drops a malformed traceparent, and with it any tracestate (W3C: not read without a valid traceparent)', () => {
    const malformed = [
      `00-${'junk'.repeat(1500)}`,
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', // upper case
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // zero trace id
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // zero parent id
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // forbidden version
      `${TRACEPARENT}, ${TRACEPARENT}`, // two headers, joined
      `${TRACEPARENT}\r\nx-injected: 1`,
    ];
    for (const traceparent of malformed) {
      expect(pickHeaders({ traceparent, tracestate: 'a=b', 'x-request-id': 'r' }, ['traceparent', 'tracestate', 'x-request-id'])).toEqual({ 'x-request-id': 'r' });
      expect(pickHeaders({ traceparent, tracestate: 'a=b' }, ['traceparent', 'tracestate'])).toBeUndefined();
    }
    expect(checkTraceContext({ tracestate: 'a=b' })).toBeUndefined();
  });

  it('drops a malformed or oversized tracestate and keeps the traceparent', () => {
    const bad = [`a=${'x'.repeat(600)}`, Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','), 'Bad Key=1', 'a=b=c', 'a=', 'a=tab\tinside', '=v', 'a=b,c'];
    for (const tracestate of bad) {
      expect(isValidTracestate(tracestate)).toBe(false);
      expect(pickHeaders({ traceparent: TRACEPARENT, tracestate }, ['traceparent', 'tracestate'])).toEqual({ traceparent: TRACEPARENT });
    }
    expect(isValidTracestate(Array.from({ length: 32 }, (_, i) => `k${i}=v`).join(','))).toBe(true);
  });
});
