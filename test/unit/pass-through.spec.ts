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
    for (const bad of ['ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`, '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', 'garbage']) {
      expect([bad, parseTraceparent(bad)]).toEqual([bad, undefined]);
      expect([bad, checkTraceContext({ traceparent: bad })]).toEqual([bad, undefined]);
    }
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
