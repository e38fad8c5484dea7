// The explorer and the registry at start-up, without a server: decorated controllers found in a
// Nest app (not listening), their names turned into the targets DTM calls, and every misfit named
// in one DtmBranchRegistryError.
import { describe, expect, it } from '@jest/globals';
import { Controller, Get, Module, Post, type Type } from '@nestjs/common';
import { EventPattern, MessagePattern } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { DtmBranchRegistry, DtmBranchRegistryError, DtmModule, DtmUsageError, DtmWorkflow, MsgBranch, MsgQueryPrepared, SagaAction, SagaCompensate, TccCancel, TccConfirm, TccTry, XaBranch, defineBranches, msgBranch, sagaBranch, tccBranch, xaBranch, type StandardSchemaV1 } from 'nestjs-dtm';

/** An app (initialised, not listening) with DtmModule and `controllers`. */
async function appWith(...controllers: Type[]) {
  @Module({ imports: [DtmModule.forRoot({ config: { appUrl: 'http://orders:3000' } })], controllers })
  class AppModule {}
  const module = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = module.createNestApplication({ logger: false });
  await app.init();
  return app;
}

@Controller('bank')
class Bank {
  @Post('pay')
  @SagaAction('pay')
  pay(): void {}

  @Post('pay-back')
  @SagaCompensate('pay')
  payBack(): void {}

  @Post('reserve')
  @TccTry('reserve')
  reserve(): void {}

  @Post('reserve/confirm')
  @TccConfirm('reserve')
  confirm(): void {}

  @Post('reserve/cancel')
  @TccCancel('reserve')
  cancel(): void {}

  @Get('plain')
  plain(): string {
    return 'not a branch';
  }
}

describe('DtmBranchExplorer and DtmBranchRegistry', () => {
  it('find every decorated handler and give each name the URL DTM calls (app_url + route)', async () => {
    const app = await appWith(Bank);
    const registry = app.get(DtmBranchRegistry);
    expect(registry.all.map((r) => `${r.kind}:${r.name}:${r.handler}`).sort()).toEqual([
      'saga-action:pay:Bank.pay',
      'saga-compensate:pay:Bank.payBack',
      'tcc-cancel:reserve:Bank.cancel',
      'tcc-confirm:reserve:Bank.confirm',
      'tcc-try:reserve:Bank.reserve',
    ]);
    expect(registry.target('saga-action', 'pay', 'http')).toBe('http://orders:3000/bank/pay');
    expect(registry.target('tcc-cancel', 'reserve', 'http')).toBe('http://orders:3000/bank/reserve/cancel');
    expect([registry.has('saga-action', 'pay'), registry.has('saga-action', 'nope')]).toEqual([true, false]);
    expect(() => registry.target('saga-action', 'nope', 'http')).toThrow(DtmUsageError);
    expect(() => registry.target('saga-action', 'nope', 'http')).toThrow(/pay/);
    await app.close();
  });

  it("an unknown name that is a branch of another kind says so, and what takes it (a saga action given to a TCC's callBranch, a Try to a saga's add)", async () => {
    const app = await appWith(Bank);
    const registry = app.get(DtmBranchRegistry);
    expect(() => registry.target('tcc-try', 'pay', 'http')).toThrow(
      'no @TccTry branch named "pay" (known: reserve); check the name, or decorate the handler. "pay" is a @SagaAction branch of this app (for a saga\'s add()); a TCC\'s callBranch() takes @TccTry branches only',
    );
    expect(() => registry.target('saga-action', 'reserve', 'http')).toThrow(
      'no @SagaAction branch named "reserve" (known: pay); check the name, or decorate the handler. "reserve" is a @TccTry branch of this app (for a TCC\'s callBranch()); a saga\'s add() takes @SagaAction branches only',
    );
    // a name of no kind: the message as before
    expect(() => registry.target('saga-action', 'nope', 'http')).toThrow(/^no @SagaAction branch named "nope" \(known: pay\); check the name, or decorate the handler$/);
    await app.close();
  });
});

describe('app_url and the global prefix', () => {
  /** The start-up warnings of an app with `Bank`, `app_url` and the global prefix `prefix`. */
  const warningsOf = async (appUrl: string, prefix?: string) => {
    const warnings: string[] = [];
    const logger = { log() {}, error() {}, warn: (message: unknown) => void warnings.push(String(message)) };
    @Module({ imports: [DtmModule.forRoot({ config: { appUrl } })], controllers: [Bank] })
    class AppModule {}
    const module = await Test.createTestingModule({ imports: [AppModule] }).compile();
    const app = module.createNestApplication({ logger });
    if (prefix) app.setGlobalPrefix(prefix);
    await app.init();
    const target = app.get(DtmBranchRegistry).target('saga-action', 'pay', 'http');
    await app.close();
    return { target, warnings: warnings.filter((w) => w.includes('global prefix')) };
  };

  it("warns at start-up when app_url ends with the global prefix, which DTM's URLs would hold twice (a 404 DTM retries forever); not for an app_url without it, nor without a prefix", async () => {
    expect(await warningsOf('http://orders:3000/api', 'api')).toEqual({
      target: 'http://orders:3000/api/api/bank/pay',
      warnings: [
        "lynx.dtm.app_url (http://orders:3000/api) ends with the app's global prefix /api, which the module adds to each branch route's path itself: DTM would call http://orders:3000/api/api/... and get 404, retried forever, unless what is in front of the app (a proxy, a parent app it is mounted in) strips one /api; set app_url to the app's base URL without the global prefix",
      ],
    });
    expect((await warningsOf('http://orders:3000/v1/api/', '/v1/api/')).warnings).toEqual([expect.stringContaining('ends with the app\'s global prefix /v1/api,')]);
    expect(await warningsOf('http://orders:3000', 'api')).toEqual({ target: 'http://orders:3000/api/bank/pay', warnings: [] });
    expect((await warningsOf('http://gateway/orders-api', 'api')).warnings).toEqual([]); // a path that only ends in the same letters
    expect((await warningsOf('http://gateway/api')).warnings).toEqual([]); // a proxy's path, no global prefix
  });
});

// (moved from test/e2e/branches.spec.ts: they need no server)
describe('start-up validation of decorated branches', () => {
  const failureOf = async (controllers: Type[]) => {
    const error = await appWith(...controllers).then((app) => app.close(), (e: unknown) => e);
    expect(error).toBeInstanceOf(DtmBranchRegistryError);
    return (error as DtmBranchRegistryError).problems;
  };

  it('names both handlers of a duplicate branch name', async () => {
    @Controller('a')
    class A {
      @Post('x') @SagaAction('pay', { compensate: false }) x() {}
      @Post('y') @SagaAction('pay', { compensate: false }) y() {}
    }
    expect(await failureOf([A])).toEqual([expect.stringContaining(`@SagaAction('pay') is served over HTTP by A.x and A.y: a branch name has one handler per transport`)]);
  });

  it('refuses a saga action without compensation, unless stated, and a compensation without action', async () => {
    @Controller('b')
    class B {
      @Post('x') @SagaAction('ship') x() {}
      @Post('y') @SagaCompensate('refund') y() {}
    }
    const problems = await failureOf([B]);
    expect(problems).toContainEqual(expect.stringContaining(`@SagaAction('ship') on B.x has no @SagaCompensate('ship'); add one, or state @SagaAction('ship', { compensate: false })`));
    expect(problems).toContainEqual(expect.stringContaining(`@SagaCompensate('refund') on B.y compensates no @SagaAction('refund')`));
  });

  it('refuses a TCC Try without Confirm and Cancel', async () => {
    @Controller('c')
    class C {
      @Post('t') @TccTry('stock') t() {}
      @Post('c') @TccConfirm('stock') c() {}
    }
    expect(await failureOf([C])).toEqual([expect.stringContaining(`@TccTry('stock') on C.t has no @TccCancel('stock'); a TCC branch needs all three`)]);
  });

  it('refuses a schema where it would never be checked (compensation, Confirm, Cancel, message branch, back-check), as the decorator is applied', () => {
    const schema = { '~standard': { version: 1, vendor: 'test', validate: () => ({ value: {} }) } } as StandardSchemaV1;
    const untyped = { schema } as never; // what plain JavaScript may pass: the types refuse it
    for (const [decorator, name] of [[SagaCompensate, '@SagaCompensate'], [TccConfirm, '@TccConfirm'], [TccCancel, '@TccCancel'], [MsgBranch, '@MsgBranch'], [MsgQueryPrepared, '@MsgQueryPrepared']] as const) {
      expect(() => decorator('credit', untyped)).toThrow(DtmUsageError);
      expect(() => decorator('credit', untyped)).toThrow(`${name}("credit") was given a schema, which would never be checked there`);
    }
    // where it is checked, it is taken
    expect(() => SagaAction('credit', { schema })).not.toThrow();
    expect(() => TccTry('credit', { schema })).not.toThrow();
  });

  it('refuses, as the decorator is applied, a branch name add(name) could never reach, options that are no object, a schema that is no Standard Schema', () => {
    const untyped = <T>(value: unknown) => value as T;
    for (const name of ['', 'a b', 'http://x/y', 'h:1/a.B/C', 'a\nb', 'x'.repeat(129)]) {
      expect(() => SagaAction(name)).toThrow(/a branch name must be 1 to 128 characters without spaces, control characters or '\/'/);
    }
    expect(() => SagaAction('x'.repeat(128))).not.toThrow();
    expect(() => TccTry('stock:v2')).not.toThrow(); // any other character is a name
    expect(() => SagaAction('pay', untyped(null))).toThrow('the options of @SagaAction("pay") must be an object, got null');
    expect(() => SagaAction('pay', { schema: untyped({}) })).toThrow(/the schema of branch "pay" does not implement Standard Schema v1/);
  });

  it('refuses, as the decorator is applied, an option its kind does not take: a typo in an options object built elsewhere (which TypeScript checks only as a literal), one of another kind', () => {
    const schema = { '~standard': { version: 1, vendor: 'test', validate: () => ({ value: {} }) } } as StandardSchemaV1;
    const untyped = <T>(value: unknown) => value as T;
    // shared options: the types take them (they share barrier), and without the check the schema is never applied
    const validated = { barrier: 'pg', shema: schema };
    expect(() => SagaAction('pay', validated)).toThrow(DtmUsageError);
    expect(() => SagaAction('pay', validated)).toThrow('@SagaAction("pay") has no option "shema": it takes barrier, compensate and schema');
    const noCompensation = { barrier: false as const, compensation: false };
    expect(() => SagaAction('pay', noCompensation)).toThrow('@SagaAction("pay") has no option "compensation": it takes barrier, compensate and schema');
    // an option of another kind, as plain JavaScript may pass it
    expect(() => TccTry('hold', untyped({ compensate: false }))).toThrow('@TccTry("hold") has no option "compensate": it takes barrier and schema');
    expect(() => SagaAction('pay', untyped({ db: 'mysql' }))).toThrow('@SagaAction("pay") has no option "db"');
    expect(() => TccCancel('hold', untyped({ barrier: 'pg', sagaBarrier: 1, retry: 2 }))).toThrow('@TccCancel("hold") has no option "sagaBarrier", "retry": it takes barrier (an option');
    expect(() => XaBranch('ledger', untyped({ dB: 'pg' }))).toThrow('@XaBranch("ledger") has no option "dB": it takes db and schema');
    // what each takes, and an option given as undefined
    expect(() => SagaAction('pay', { barrier: 'pg', compensate: false, schema })).not.toThrow();
    expect(() => XaBranch('ledger', { db: 'pg', schema })).not.toThrow();
    expect(() => SagaCompensate('pay', untyped({ barrier: false, schema: undefined }))).not.toThrow();
  });

  it('refuses, as the decorator is applied, a contract entry of another kind (plain JavaScript: the types refuse it) and a { service, branch } whose name a string could not be', () => {
    const untyped = <T>(value: unknown) => value as T;
    const Bank = defineBranches('bank', { withdraw: sagaBranch<{ amount: number }>(), hold: tccBranch<{ amount: number }>(), credit: msgBranch<{ amount: number }>(), post: xaBranch<{ amount: number }>() });
    expect(() => TccTry(untyped(Bank.withdraw))).toThrow(DtmUsageError);
    expect(() => TccTry(untyped(Bank.withdraw))).toThrow('@TccTry was given the saga branch "withdraw" of service "bank": a saga branch is served by @SagaAction / @SagaCompensate');
    expect(() => SagaCompensate(untyped(Bank.hold))).toThrow('@SagaCompensate was given the tcc branch "hold" of service "bank": a tcc branch is served by @TccTry / @TccConfirm / @TccCancel');
    expect(() => XaBranch(untyped(Bank.credit))).toThrow('a msg branch is served by @MsgBranch');
    expect(() => MsgBranch(untyped(Bank.post))).toThrow('an xa branch is served by @XaBranch');
    expect(() => SagaAction(untyped({ service: 'bank', branch: 'a b' }))).toThrow(/@SagaAction\("a b"\): a branch name must be 1 to 128 characters/);
    // each decorator of the entry's kind, and an entry without a kind (untyped by name)
    expect(() => [SagaAction(Bank.withdraw), SagaCompensate(Bank.withdraw), TccTry(Bank.hold), TccConfirm(Bank.hold), TccCancel(Bank.hold), MsgBranch(Bank.credit), XaBranch(Bank.post)]).not.toThrow();
    expect(() => TccTry({ service: 'bank', branch: 'hold' })).not.toThrow();
  });

  it('defineBranches refuses, with DtmUsageError, a service or branch name callers could not use and a declaration that is none (plain JavaScript: the types refuse them)', () => {
    const untyped = (value: unknown) => value as never;
    expect(() => defineBranches('bank eu', { withdraw: sagaBranch() })).toThrow(DtmUsageError);
    expect(() => defineBranches('bank eu', { withdraw: sagaBranch() })).toThrow('defineBranches: the service name must be a letter then letters, digits, _ and - (the key of lynx.dtm.services), got "bank eu"');
    expect(() => defineBranches('bank', { 'with draw': sagaBranch() })).toThrow(DtmUsageError);
    expect(() => defineBranches('bank', { 'with draw': sagaBranch() })).toThrow('defineBranches("bank"): branch name "with draw" must be a letter, digit or _ then');
    // sagaBranch not called, a misspelt kind, nothing: each would be an entry without a kind, any decorator's, its schema lost
    expect(() => defineBranches('bank', untyped({ withdraw: sagaBranch }))).toThrow('defineBranches("bank"): branch "withdraw" must be declared with sagaBranch(), tccBranch(), msgBranch() or xaBranch() (called: sagaBranch<Payload>() or sagaBranch(schema)), got a function');
    expect(() => defineBranches('bank', untyped({ withdraw: { kind: 'sagas' } }))).toThrow('branch "withdraw" must be declared with sagaBranch(), tccBranch(), msgBranch() or xaBranch() (called: sagaBranch<Payload>() or sagaBranch(schema)), got "sagas"');
    expect(() => defineBranches('bank', untyped({ withdraw: undefined }))).toThrow(/got undefined$/);
    expect(() => defineBranches('bank', untyped({ withdraw: sagaBranch(untyped({ validate: () => ({}) })) }))).toThrow(/the schema of branch "withdraw" does not implement Standard Schema v1/);
    expect(() => defineBranches('bank', untyped(null))).toThrow('the branches of defineBranches("bank") must be an object, got null');
    expect(defineBranches('bank', { withdraw: sagaBranch(), 'stock:v2': tccBranch() })['stock:v2']).toEqual({ service: 'bank', branch: 'stock:v2', kind: 'tcc' });
  });

  it('refuses a workflow name that is no string or empty, and options @DtmWorkflow does not have (a transaction option given beside transaction)', () => {
    const untyped = <T>(value: unknown) => value as T;
    expect(() => DtmWorkflow('')).toThrow(/a workflow name must be a string of 1 to 128 characters/);
    expect(() => DtmWorkflow(untyped(123))).toThrow(DtmUsageError);
    expect(() => DtmWorkflow('w', untyped({ retryInterval: 5 }))).toThrow('@DtmWorkflow("w") has no option "retryInterval": it takes compensateFailedStep and transaction');
    expect(() => DtmWorkflow('transfer.v2', { compensateFailedStep: true, transaction: { retryInterval: 5 } })).not.toThrow();
  });

  it('refuses a decorated method that is not a route, and a route with path parameters', async () => {
    @Controller('d')
    class D {
      @SagaAction('noRoute', { compensate: false }) x() {}
      @Post(':id') @SagaAction('param', { compensate: false }) y() {}
    }
    const problems = await failureOf([D]);
    expect(problems).toContainEqual(expect.stringContaining('D.x is decorated as a DTM branch but is neither a route nor a gRPC method; add @Post() (or @Get() for @MsgQueryPrepared), or @GrpcMethod()'));
    expect(problems).toContainEqual(expect.stringContaining('D.y (/d/:id) has path parameters'));
  });

  it('refuses a branch on a @MessagePattern handler with neither a route nor a @GrpcMethod, saying a gRPC branch needs @GrpcMethod (before: only "neither a route nor a gRPC method", with no word on the pattern)', async () => {
    @Controller()
    class P {
      @MessagePattern('withdraw') @SagaAction('patternOnly', { compensate: false }) x() {}
      @EventPattern('shipped') @MsgBranch('eventOnly') y(_order: unknown) {}
    }
    const problems = await failureOf([P]);
    for (const where of ['P.x', 'P.y']) {
      expect(problems).toContainEqual(
        `${where} is decorated as a DTM branch but is a @MessagePattern / @EventPattern handler, neither a route nor a gRPC method: DTM calls branches over HTTP and gRPC only, and Nest routes a gRPC call (even on a Transport.GRPC server) only to @GrpcMethod('Service', 'Rpc') of the .proto's rpc, never to a pattern; replace the pattern with @GrpcMethod(), or add @Post() (or @Get() for @MsgQueryPrepared)`,
      );
    }
  });

});
