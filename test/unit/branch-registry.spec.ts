// The explorer and the registry at start-up, without a server: decorated controllers found in a
// Nest app (not listening), their names turned into the targets DTM calls, and every misfit named
// in one DtmBranchRegistryError.
import { describe, expect, it } from '@jest/globals';
import { Controller, Get, Module, Post, type Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DtmBranchRegistry, DtmBranchRegistryError, DtmModule, DtmUsageError, SagaAction, SagaCompensate, TccCancel, TccConfirm, TccTry } from 'nestjs-dtm';

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

  it('refuse at start-up, in one error naming each handler: a saga action without compensation, a compensation without action, an incomplete TCC, a branch that is not a route, a name served twice', async () => {
    @Controller('bad')
    class Bad {
      @Post('a')
      @SagaAction('lonely')
      lonely(): void {}

      @Post('b')
      @SagaCompensate('orphan')
      orphan(): void {}

      @Post('c')
      @TccTry('half')
      half(): void {}

      @SagaAction('unrouted', { compensate: false })
      unrouted(): void {}

      @Post('d')
      @SagaAction('twice', { compensate: false })
      twiceA(): void {}

      @Post('e')
      @SagaAction('twice', { compensate: false })
      twiceB(): void {}
    }
    const error = await appWith(Bad).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DtmBranchRegistryError);
    const problems = (error as DtmBranchRegistryError).problems.join('\n');
    for (const named of ['Bad.lonely', 'Bad.orphan', 'Bad.half', 'Bad.unrouted', 'Bad.twiceA', 'Bad.twiceB', "@TccConfirm('half')", "@TccCancel('half')"]) {
      expect(problems).toContain(named);
    }
    expect((error as DtmBranchRegistryError).problems).toHaveLength(5);
  });
});
