// Which gRPC deadlines count as "never sent" (the submit of a `submitAndWait` then fails at once
// with DtmUnavailableError): only those whose details, in grpc-js's words, say the call still waited
// for a connection. The e2e tier (dtm-calls-bounded.spec) pins those words against grpc-js itself.
import { describe, expect, it } from '@jest/globals';
import type { ServiceError } from '@grpc/grpc-js';
import { neverSent } from '../../lib/transport/grpc/grpc.transport.js';

const error = (code: number, details: string) => Object.assign(new Error(details), { code, details, metadata: undefined }) as unknown as ServiceError;
const DEADLINE_EXCEEDED = 4;
const UNAVAILABLE = 14;

describe('neverSent', () => {
  it.each([
    'Deadline exceeded after 1.000s,name resolution: 0.005s,metadata filters: 0.002s,time to current attempt start: 0.001s,Waiting for LB pick',
    'Deadline exceeded after 1.000s,Waiting for LB pick',
    'Deadline exceeded after 1.000s,wait_for_ready,Waiting for LB pick',
    'Deadline exceeded after 1.000s,waiting for name resolution',
    'Deadline exceeded after 1.000s,name resolution: 0.001s,waiting for metadata filters',
  ])('a deadline passed while grpc-js waited for a connection: %s', (details) => {
    expect(neverSent(error(DEADLINE_EXCEEDED, details))).toBe(true);
  });

  it.each([
    ['on a connection', 'Deadline exceeded after 0.998s,name resolution: 0.005s,LB pick: 0.006s,remote_addr=127.0.0.1:37693'],
    ['an earlier attempt may have been sent', 'Deadline exceeded after 1.000s,previous attempts: 1,time to current attempt start: 0.300s,Waiting for LB pick'],
    ['a peer named', 'Deadline exceeded after 1.000s,Waiting for LB pick,remote_addr=127.0.0.1:1'],
    ['words of another grpc-js', 'Deadline exceeded'],
    ['the words inside another segment', 'Deadline exceeded after 1.000s,not Waiting for LB pick yet'],
  ])('may have been sent: %s', (_what, details) => {
    expect(neverSent(error(DEADLINE_EXCEEDED, details))).toBe(false);
  });

  it('only a deadline: an UNAVAILABLE with the same words is not read', () => {
    expect(neverSent(error(UNAVAILABLE, 'Deadline exceeded after 1.000s,Waiting for LB pick'))).toBe(false);
  });
});
