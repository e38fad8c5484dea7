// Which branches a transaction that did not finish in time names (from DTM's record), their names,
// the in-process failure a handler recorded, and the sentences a probe's result gives. No probe
// runs here: no target of these records is this app's route or one of the transaction's own.
import { describe, expect, it } from '@jest/globals';
import { recordBranchFailure, recordBranchRefusal, recordedBranchFailure } from '../../lib/diagnostics/branch-failures.js';
import { describeProbe, describeUnfinished, diagnoseUnfinished, type DiagnosisScope } from '../../lib/diagnostics/unfinished.js';
import type { BranchRecord, TransactionRecord } from '../../lib/transport/dtm.types.js';

const noProbe: DiagnosisScope = { ownRoute: () => undefined, targets: new Set(), probeMs: 100 };

function branch(branchId: string, op: string, status: BranchRecord['status'], url: string): BranchRecord {
  return { branchId, op, status, url, data: Buffer.from('{"a":1}') };
}

function record(partial: Partial<TransactionRecord> & Pick<TransactionRecord, 'gid' | 'transType' | 'status' | 'branches'>): TransactionRecord {
  return { protocol: 'http', steps: [], payloads: [], options: { branchHeaders: {}, concurrent: false }, ...partial };
}

describe('diagnoseUnfinished', () => {
  // DTM reads a saga's concurrency from its custom data; the top-level concurrent is there only when it came over HTTP
  const saga = (status: TransactionRecord['status'], concurrent: boolean, protocol: TransactionRecord['protocol'] = 'http') =>
    record({
      gid: `g-${status}-${concurrent}`,
      transType: 'saga',
      status,
      protocol,
      customData: concurrent ? { concurrent: true, orders: {} } : undefined,
      options: { branchHeaders: {}, concurrent: concurrent && protocol === 'http' },
      branches: [
        branch('01', 'compensate', 'succeed', 'http://bank/api/withdraw-revert'),
        branch('01', 'action', 'succeed', 'http://bank/api/withdraw'),
        branch('02', 'compensate', 'prepared', 'http://bank/api/deposit-revert'),
        branch('02', 'action', 'prepared', 'http://bank/api/deposit'),
        branch('03', 'compensate', 'prepared', 'http://shop/ship-revert'),
        branch('03', 'action', 'prepared', 'shop:50051/shop.Shop/Ship'),
      ],
    });

  it('a saga without concurrency: only its first unfinished action (it holds up the rest), named by the last part of its target', async () => {
    expect(await diagnoseUnfinished(saga('submitted', false), noProbe)).toEqual([{ branchId: '02', op: 'action', name: 'deposit', target: 'http://bank/api/deposit' }]);
  });

  it.each(['http', 'grpc'] as const)('a concurrent saga submitted over %s: every unfinished action; a gRPC target is named by its method', async (protocol) => {
    expect((await diagnoseUnfinished(saga('submitted', true, protocol), noProbe)).map((b) => `${b.branchId} ${b.op} ${b.name}`)).toEqual(['02 action deposit', '03 action Ship']);
  });

  it('an aborting transaction: its unfinished undo ops', async () => {
    expect((await diagnoseUnfinished(saga('aborting', false), noProbe)).map((b) => `${b.branchId} ${b.op} ${b.name}`)).toEqual(['02 compensate deposit-revert', '03 compensate ship-revert']);
  });

  it("a failure this process's handler answered is the cause; credentials in a target are not shown", async () => {
    const tcc = record({
      gid: 'g-tcc-recorded',
      transType: 'tcc',
      status: 'submitted',
      branches: [branch('01', 'cancel', 'prepared', 'http://u:secret@bank/cancel'), branch('01', 'confirm', 'prepared', 'http://u:secret@bank/confirm')],
    });
    recordBranchFailure('g-tcc-recorded', '01', 'confirm', { handler: 'BankController.confirm', status: 500, message: 'relation "dtm_barrier.barrier" does not exist' });
    const found = await diagnoseUnfinished(tcc, noProbe);
    expect(found).toEqual([{ branchId: '01', op: 'confirm', name: 'confirm', target: 'http://***@bank/confirm', cause: 'BankController.confirm failed (HTTP 500): relation "dtm_barrier.barrier" does not exist' }]);
    // a sentence of its own after the message it ends ("... under a new one). Unfinished: ...", not "... one) Unfinished: ...")
    expect(describeUnfinished(found)).toBe('. Unfinished: branch 01 "confirm" (op confirm, http://***@bank/confirm): BankController.confirm failed (HTTP 500): relation "dtm_barrier.barrier" does not exist');
  });

  it('names at most five branches', async () => {
    const many = record({ gid: 'g-many', transType: 'msg', status: 'submitted', branches: Array.from({ length: 8 }, (_, i) => branch(`0${i + 1}`, 'action', 'prepared', `http://x/b${i}`)) });
    expect(await diagnoseUnfinished(many, noProbe)).toHaveLength(5);
  });
});

describe('the failures kept for diagnoses (the last 500 of this process)', () => {
  const real = { handler: 'BankController.debit', status: 500, message: 'the real failure' };
  const forged = { handler: 'BankController.debit', status: 500, message: 'a call with a made-up gid' };

  it('calls refused for their token (branch_auth_keys) are kept apart: 500 of them leave a real failure in place', () => {
    recordBranchFailure('g-real-1', '01', 'action', real);
    for (let i = 0; i < 600; i++) recordBranchRefusal(`g-forged-${i}`, '01', 'action', forged);
    expect(recordedBranchFailure('g-real-1', '01', 'action')?.message).toBe('the real failure');
  });

  it('without keys a failed call of a made-up gid is kept like DTM\'s: 500 of them push a real failure out (the documented bound, docs/diagnostics.md)', () => {
    recordBranchFailure('g-real-2', '01', 'action', real);
    for (let i = 0; i < 499; i++) recordBranchFailure(`g-made-up-${i}`, '01', 'action', forged);
    expect(recordedBranchFailure('g-real-2', '01', 'action')?.message).toBe('the real failure');
    recordBranchFailure('g-made-up-last', '01', 'action', forged);
    expect(recordedBranchFailure('g-real-2', '01', 'action')).toBeUndefined();
  });

  it('a call whose gid, branch id or op is longer than any key of a transaction this module started (128) is not kept: 600 forged ones of 10 000 characters each hold nothing and push nothing out', () => {
    recordBranchRefusal('g-refused-3', '01', 'action', forged);
    recordBranchFailure('g-real-3', '01', 'action', real);
    const pad = 'x'.repeat(10_000);
    for (let i = 0; i < 200; i++) {
      recordBranchRefusal(`${pad}-${i}`, '01', 'action', forged);
      recordBranchRefusal(`g-${i}`, `${pad}-${i}`, 'action', forged);
      recordBranchFailure(`g-${i}`, '01', `${pad}-${i}`, forged);
    }
    expect(recordedBranchFailure(`${pad}-0`, '01', 'action')).toBeUndefined();
    expect(recordedBranchFailure('g-refused-3', '01', 'action')?.message).toBe('a call with a made-up gid');
    expect(recordedBranchFailure('g-real-3', '01', 'action')?.message).toBe('the real failure');
    // 128 characters is a key like any other
    recordBranchRefusal('g'.repeat(128), '0'.repeat(128), 'action', forged);
    expect(recordedBranchFailure('g'.repeat(128), '0'.repeat(128), 'action')?.message).toBe('a call with a made-up gid');
  });
});

describe('describeProbe', () => {
  const own = { name: 'debit', handler: 'BankController.debit', method: 'GET' };
  it('reads each result as the cause it points at', () => {
    expect(describeProbe({ kind: 'dns', host: 'orders', code: 'ENOTFOUND' }, 'POST', own)).toContain('its host orders does not resolve here (ENOTFOUND)');
    expect(describeProbe({ kind: 'refused', address: '127.0.0.1:9' }, 'POST', own)).toContain('connection refused at 127.0.0.1:9');
    expect(describeProbe({ kind: 'answered', status: 403, body: '{"message":"no session","statusCode":403}' }, 'POST', own)).toMatch(/^POST is refused with 403 before BankController\.debit \(no session\)/);
    expect(describeProbe({ kind: 'answered', status: 404, body: '' }, 'POST', own)).toContain('(BankController.debit is @Get;');
    expect(describeProbe({ kind: 'answered', status: 405, body: '' }, 'POST', undefined)).toMatch(/^405 for POST/);
    expect(describeProbe({ kind: 'answered', status: 500, body: '{"message":"gateway down"}' }, 'POST', undefined)).toBe('POST answered 500: gateway down');
    expect(describeProbe({ kind: 'answered', status: 400, body: '{"message":"BankController.debit is a DTM branch, but this call lacks gid"}' }, 'POST', own)).toContain('is reachable and answers POST');
    expect(describeProbe({ kind: 'connected', address: 'x:1' }, 'POST', undefined)).toBeUndefined();
  });
});
