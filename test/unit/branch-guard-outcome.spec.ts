// The branch guard and the outcome mapping, without a server: a decorated handler's call checked
// as DtmBranchGuard checks it (HTTP query / gRPC dtm-* metadata), and errors mapped to what DTM
// reads (HTTP 409 / 425 / 500 with their bodies; gRPC ABORTED / FAILED_PRECONDITION / INTERNAL).
import { describe, expect, it } from '@jest/globals';
import { BadRequestException, ConflictException, ForbiddenException, HttpException } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { Metadata, status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { firstValueFrom } from 'rxjs';
import { BarrierTx, DtmBranchGuard, DtmFailureError, DtmOngoingError, DtmUsageError, SagaAction, SagaCompensate } from 'nestjs-dtm';
import { BRANCH_CALL, type DtmBranchRuntime } from '../../lib/branches/branch-call.js';
import { BranchAuth } from '../../lib/auth/branch-auth.js';
import { grpcBranchTransport, RAW_REQUEST } from '../../lib/branches/grpc/grpc-branch.transport.js';
import { httpBranchTransport } from '../../lib/branches/http/http-branch.transport.js';

class Bank {
  @SagaAction('pay')
  pay(): void {}

  @SagaCompensate('pay')
  refund(): void {}
}

/** An HTTP call of `handler` with `query`, as Nest's ExecutionContext gives it to a guard. */
function httpCall(handler: keyof Bank, query: Record<string, string>) {
  const request: Record<string | symbol, unknown> = { query, headers: {}, url: `/bank/${handler}` };
  const context = new ExecutionContextHost([request, {}], Bank, Bank.prototype[handler]);
  context.setType('http');
  return { request, context };
}

/** A gRPC call of `handler` with DTM's keys as `dtm-*` metadata. */
function grpcCall(handler: keyof Bank, keys: Record<string, string>) {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(keys)) metadata.set(`dtm-${k}`, v);
  const call: Record<string | symbol, unknown> = { metadata, getPath: () => '/bank.Bank/Pay' };
  const context = new ExecutionContextHost([{}, metadata, call], Bank, Bank.prototype[handler]);
  context.setType('rpc');
  return { call, context };
}

const KEYS = { gid: 'gid-ok-1', trans_type: 'saga', branch_id: '01', op: 'action' };
const guard = new DtmBranchGuard();

describe('DtmBranchGuard', () => {
  it('lets a complete call of an op the handler serves through, and leaves the call state for the handler', () => {
    const { request, context } = httpCall('pay', KEYS);
    expect(guard.canActivate(context)).toBe(true);
    expect(request[BRANCH_CALL]).toEqual(expect.objectContaining({ skip: undefined }));
    const grpc = grpcCall('refund', { ...KEYS, op: 'compensate' });
    expect(guard.canActivate(grpc.context)).toBe(true);
  });

  it('refuses a call of a branch handler over any transport but HTTP and gRPC (a TCP message, a WebSocket event), whatever it carries: nothing there can be checked', () => {
    for (const [type, args] of [['rpc', [{ gid: 'made-up', amount: 1_000_000 }, { getPattern: () => 'pay' }]], ['ws', [{}, { gid: 'made-up' }]]] as const) {
      const context = new ExecutionContextHost([...args], Bank, Bank.prototype.pay);
      context.setType(type);
      expect(() => guard.canActivate(context)).toThrow(DtmUsageError);
      expect(() => guard.canActivate(context)).toThrow(`Bank.pay is a DTM branch and was called over "${type}"`);
    }
  });

  it('refuses a call without DTM\'s keys (400 naming the missing ones), and an op the handler does not serve', () => {
    const missing = () => guard.canActivate(httpCall('pay', { gid: 'g', op: 'action' }).context);
    expect(missing).toThrow(BadRequestException);
    expect(missing).toThrow(/trans_type.*branch_id|branch_id.*trans_type/);
    expect(() => guard.canActivate(httpCall('pay', { ...KEYS, op: 'compensate' }).context)).toThrow(BadRequestException);
    expect(() => guard.canActivate(grpcCall('pay', { gid: 'g', trans_type: 'saga' }).context)).toThrow(BadRequestException);
  });

  it('keys that break the rule: FAILURE for an action (DTM rolls back), success without the handler for its undo', () => {
    const bad = { ...KEYS, gid: 'gid with spaces' };
    expect(() => guard.canActivate(httpCall('pay', bad).context)).toThrow(DtmFailureError);
    const { request, context } = httpCall('refund', { ...bad, op: 'compensate' });
    expect(guard.canActivate(context)).toBe(true);
    expect((request[BRANCH_CALL] as { skip?: string }).skip).toEqual(expect.any(String));
  });

  it('a trans_type DTM never sends: FAILURE for an action over HTTP and gRPC, success without the handler for its undo; every type DTM sends passes (a workflow calls saga branches)', () => {
    for (const transType of ['SAGA', 'x'.repeat(46), 'saga\n']) {
      const refused = () => guard.canActivate(httpCall('pay', { ...KEYS, trans_type: transType }).context);
      expect(refused).toThrow(DtmFailureError);
      expect(refused).toThrow('branch call refused: the trans_type is none DTM sends (saga, msg, tcc, xa, workflow, in lower case); the handler did not run and nothing was written');
      const { request, context } = httpCall('refund', { ...KEYS, trans_type: transType, op: 'compensate' });
      expect(guard.canActivate(context)).toBe(true);
      expect((request[BRANCH_CALL] as { skip?: string }).skip).toBe('the trans_type is none DTM sends (saga, msg, tcc, xa, workflow, in lower case)');
    }
    expect(() => guard.canActivate(grpcCall('pay', { ...KEYS, trans_type: 'Saga' }).context)).toThrow(DtmFailureError);
    const grpc = grpcCall('refund', { ...KEYS, trans_type: 'Saga', op: 'compensate' });
    expect(guard.canActivate(grpc.context)).toBe(true);
    expect((grpc.call[BRANCH_CALL] as { skip?: string }).skip).toEqual(expect.any(String));
    for (const transType of ['saga', 'msg', 'tcc', 'xa', 'workflow']) {
      const { request, context } = httpCall('pay', { ...KEYS, trans_type: transType });
      expect(guard.canActivate(context)).toBe(true);
      expect(request[BRANCH_CALL]).toEqual(expect.objectContaining({ skip: undefined }));
    }
  });
});

describe('DtmBranchGuard with branch_auth_keys: gRPC metadata an attacker shapes', () => {
  const auth = new BranchAuth(['k'.repeat(40)]);
  const runtime = { config: { branchAuthKeys: auth, branchAuthCheckActions: false, branchAuthIssueWindow: 900 }, query: async () => null } as unknown as DtmBranchRuntime;
  const authGuard = new DtmBranchGuard(runtime);
  const payload = Buffer.from([8, 30]);
  const issued = '1800000000';
  const token = auth.sign({ channel: 'dtm', gid: 'g1', transType: 'saga', branchId: '01', op: 'action', target: '/bank.Bank/Pay', payload, issued, headers: 'x-tenant:acme\n' });
  /** The call DTM makes (its `dtm-auth`, issue time and forwarded header), with `shape` applied to its metadata. */
  const check = async (shape: (metadata: Metadata) => void = () => undefined): Promise<string> => {
    const metadata = new Metadata();
    for (const [k, v] of Object.entries({ gid: 'g1', trans_type: 'saga', branch_id: '01', op: 'action' })) metadata.set(`dtm-${k}`, v);
    metadata.set('dtm-auth', `action.01=${token}`);
    metadata.set('dtm-auth-issued', issued);
    metadata.set('dtm-auth-headers', 'x-tenant');
    metadata.set('x-tenant', 'acme');
    shape(metadata);
    const call = { metadata, getPath: () => '/bank.Bank/Pay' };
    const context = new ExecutionContextHost([{ [RAW_REQUEST]: payload }, metadata, call], Bank, Bank.prototype.pay);
    context.setType('rpc');
    try {
      return `${await authGuard.canActivate(context)} ${grpcBranchTransport.gid(call)}`;
    } catch (err) {
      return err instanceof HttpException ? `${err.getStatus()}` : `${err as Error}`;
    }
  };

  it('runs the call as signed; a key repeated, sent only as binary (-bin) or in upper case changes nothing it checks: the first dtm-* value is the call, a repeated token, issue time or signed header is refused', async () => {
    expect(await check()).toBe('true g1');
    // DTM's keys: the first value is read everywhere (the guard, the token, the barrier, @BranchContext): a second one is ignored
    expect(await check((m) => m.add('dtm-gid', 'g2'))).toBe('true g1');
    expect(await check((m) => (m.set('dtm-gid', 'g2'), m.add('dtm-gid', 'g1')))).toBe('401');
    expect(await check((m) => m.add('dtm-op', 'compensate'))).toBe('true g1');
    // grpc-js reads keys in lower case (HTTP/2 sends no other): a key in upper case is the same key
    expect(await check((m) => m.set('DTM-GID', 'g2'))).toBe('401');
    // a token, an issue time or a signed header twice: none of them is read, refused
    expect(await check((m) => m.add('dtm-auth', `action.01=${token}`))).toBe('401');
    expect(await check((m) => m.add('dtm-auth-issued', issued))).toBe('401');
    expect(await check((m) => m.add('x-tenant', 'acme'))).toBe('401');
    expect(await check((m) => m.add('x-tenant', 'evil'))).toBe('401');
    // the token as binary metadata only: not read (no token), refused
    expect(await check((m) => (m.remove('dtm-auth'), m.set('dtm-auth-bin', Buffer.from(`action.01=${token}`))))).toBe('401');
    // another method, op or branch under the same token
    expect(await check((m) => m.set('dtm-branch_id', '02'))).toBe('401');
  });
});

describe('outcome mapping', () => {
  /** What the HTTP transport answers for `error`: [status, body]. */
  function httpAnswer(error: unknown): [number, unknown] {
    let answered: [number, unknown] = [0, undefined];
    const adapterHost = { httpAdapter: { reply: (_res: unknown, body: unknown, code: number) => (answered = [code, body]) } };
    httpBranchTransport.answer(error, httpCall('pay', KEYS).context, adapterHost as never);
    return answered;
  }

  it('HTTP: DtmFailureError 409 FAILURE with its reason, DtmOngoingError 425 ONGOING, HttpException its own, anything else 500 without its text', () => {
    expect(httpAnswer(new DtmFailureError('no account zed'))).toEqual([409, { dtm_result: 'FAILURE', message: 'no account zed' }]);
    expect(httpAnswer(new DtmOngoingError('not yet'))).toEqual([425, { dtm_result: 'ONGOING', message: 'not yet' }]);
    expect(httpAnswer(new ForbiddenException('no'))).toEqual([403, expect.objectContaining({ statusCode: 403, message: 'no' })]);
    expect(httpAnswer(new Error('FAILURE inside a secret message'))).toEqual([500, { statusCode: 500, message: 'Internal server error' }]);
  });

  it('HTTP: an RpcException (a handler that is also a @GrpcMethod) is answered as DTM reads its code over gRPC: ABORTED 409 FAILURE, FAILED_PRECONDITION and ABORTED saying ONGOING 425, its details (else message) as reason; any other code 500', () => {
    expect(httpAnswer(new RpcException({ code: 10, message: 'ONGOING', details: 'out of stock' }))).toEqual([409, { dtm_result: 'FAILURE', message: 'out of stock' }]);
    expect(httpAnswer(new RpcException({ code: 10, message: 'no account zed' }))).toEqual([409, { dtm_result: 'FAILURE', message: 'no account zed' }]);
    expect(httpAnswer(new RpcException({ code: 9, message: 'later' }))).toEqual([425, { dtm_result: 'ONGOING', message: 'later' }]);
    expect(httpAnswer(new RpcException({ code: 10, details: 'ONGOING' }))).toEqual([425, { dtm_result: 'ONGOING', message: 'ONGOING' }]);
    expect(httpAnswer(new RpcException({ code: 14, details: 'db down FAILURE' }))).toEqual([500, { statusCode: 500, message: 'Internal server error' }]);
    expect(httpAnswer(new RpcException('a plain RpcException'))).toEqual([500, { statusCode: 500, message: 'Internal server error' }]);
  });

  it("HTTP: an ONGOING's, RpcException's or HttpException's text past 4000 characters is cut between words (the body's other fields kept while short), a short one sent whole", () => {
    const long = Array.from({ length: 2000 }, (_, i) => `w${i}`).join(' '); // 10889 characters
    const cut = `${long.slice(0, long.lastIndexOf(' ', 4000))}…`;
    expect(httpAnswer(new DtmOngoingError(long))).toEqual([425, { dtm_result: 'ONGOING', message: cut }]);
    expect(httpAnswer(new RpcException({ code: 10, details: long }))).toEqual([409, { dtm_result: 'FAILURE', message: cut }]);
    expect(httpAnswer(new ConflictException(long))).toEqual([409, { statusCode: 409, message: cut, error: 'Conflict' }]);
    expect(httpAnswer(new HttpException(long, 503))).toEqual([503, cut]);
    expect(httpAnswer(new HttpException({ message: 'db down', trace: long }, 503))).toEqual([503, { statusCode: 503, message: 'db down' }]);
    expect(httpAnswer(new HttpException({ message: long, code: 'E42' }, 503))).toEqual([503, { message: cut, code: 'E42' }]);
    const short = { message: 'db down', trace: 'x'.repeat(3000) };
    expect(httpAnswer(new HttpException(short, 503))[1]).toBe(short);
  });

  it("gRPC: an ONGOING's, RpcException's or HttpException's message past 4000 characters is cut between words", async () => {
    const grpcAnswer = (error: unknown) => firstValueFrom(grpcBranchTransport.answer(error, grpcCall('pay', KEYS).context, undefined) as never).catch((e: unknown) => e);
    const long = Array.from({ length: 2000 }, (_, i) => `w${i}`).join(' ');
    const cut = `${long.slice(0, long.lastIndexOf(' ', 4000))}…`;
    expect(await grpcAnswer(new DtmOngoingError(long))).toEqual({ code: status.FAILED_PRECONDITION, message: cut });
    expect(await grpcAnswer(new ConflictException(long))).toEqual({ code: status.ABORTED, message: cut });
    expect(await grpcAnswer(new HttpException(long, 503))).toEqual({ code: status.INTERNAL, message: cut });
    expect(await grpcAnswer(new RpcException({ code: status.ABORTED, details: long, message: 'short' }))).toEqual({ code: status.ABORTED, details: cut, message: 'short' });
    expect(await grpcAnswer(new RpcException({ code: status.UNAVAILABLE, message: long }))).toEqual({ code: status.UNAVAILABLE, message: cut });
  });

  it('gRPC: ABORTED, FAILED_PRECONDITION, an RpcException as given, an HttpException by its status, anything else INTERNAL', async () => {
    const grpcAnswer = (error: unknown) => firstValueFrom(grpcBranchTransport.answer(error, grpcCall('pay', KEYS).context, undefined) as never).catch((e: unknown) => e);
    expect(await grpcAnswer(new DtmFailureError('no account zed'))).toEqual({ code: status.ABORTED, message: 'no account zed' });
    expect(await grpcAnswer(new DtmOngoingError('not yet'))).toEqual({ code: status.FAILED_PRECONDITION, message: 'not yet' });
    expect(await grpcAnswer(new RpcException({ code: status.NOT_FOUND, message: 'x' }))).toEqual({ code: status.NOT_FOUND, message: 'x' });
    expect(await grpcAnswer(new BadRequestException('bad'))).toEqual({ code: status.INVALID_ARGUMENT, message: 'bad' });
    expect(await grpcAnswer(new Error('boom'))).toEqual({ code: status.INTERNAL, message: 'boom' });
  });
});

describe('a handler behind the barrier called directly', () => {
  class Vault {
    calls = 0;

    @SagaAction('stash', { compensate: false, barrier: 'pg' })
    stash(_payload: unknown, @BarrierTx() _tx?: unknown): string {
      this.calls++;
      return 'stashed';
    }
  }

  it('(a unit test calling it) rejects with a DtmUsageError that says how to test it, and the handler does not run', async () => {
    const vault = new Vault();
    const call = vault.stash({ amount: 1 }, { query: async () => ({ rows: [] }) }) as unknown as Promise<unknown>;
    await expect(call).rejects.toThrow(DtmUsageError);
    await expect(vault.stash({ amount: 1 }) as unknown as Promise<unknown>).rejects.toThrow(
      'Vault.stash runs in a local transaction (barrier or XA database), which the module opens only for a branch call DTM makes through its route (or gRPC method), and this call did not come that way (a direct call, from a unit test say). Call it as DTM does (callBranch() of nestjs-dtm/testing',
    );
    expect(vault.calls).toBe(0);
  });
});
