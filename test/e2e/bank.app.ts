// The bank of services-by-name.spec.ts, a participant over HTTP run as its own process (environment:
// PORT, DTM_URL, DTM_GRPC). It publishes its branches (publish_branches) as the contract Bank of
// shop-contracts.ts names them; balances are kept in memory, and GET /bank/state shows them with
// every branch call that ran (once per gid, branch and op: see once()). withdraw checks its payload with the contract's schema; deposit with
// a Nest pipe (as class-validator's ValidationPipe would): an invalid payload is a FAILURE.
import 'reflect-metadata';
import { BadRequestException, Body, Controller, Get, Injectable, Module, Post, type PipeTransform } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BranchContext, DtmFailureError, DtmModule, MsgBranch, SagaAction, SagaCompensate, TccCancel, TccConfirm, TccTry, type BranchInfo, type BranchPayload } from 'nestjs-dtm';
import { Bank, type Movement } from './shop-contracts.js';
import { oncePerCall } from '../support/once-per-call.js';

/** What the bank holds and what it was called with. */
const state = { balances: { alice: 100, bob: 0 } as Record<string, number>, held: 0, calls: [] as string[] };

/** A pipe refusing a movement without a positive whole amount (HTTP 400, as a validation pipe answers). */
@Injectable()
class WholeAmount implements PipeTransform {
  transform(value: Movement): Movement {
    if (!Number.isInteger(value?.amount) || value.amount <= 0) throw new BadRequestException(['amount must be a positive whole number']);
    return value;
  }
}

/** Runs a call's business once per gid, branch and op (DTM calls a branch at least once). */
const once = oncePerCall();

function move(account: string, by: number): void {
  if (!(account in state.balances)) throw new DtmFailureError(`no account ${account}`);
  if (state.balances[account] + by < 0) throw new DtmFailureError(`${account} cannot pay ${-by}`);
  state.balances[account] += by;
}

@Controller('bank')
class BankController {
  @Get('state')
  state() {
    return state;
  }

  @Post('withdraw')
  @SagaAction(Bank.withdraw)
  withdraw(@Body() m: BranchPayload<typeof Bank.withdraw>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      state.calls.push(`withdraw ${m.account} ${m.amount}`);
      move(m.account, -m.amount);
    });
  }

  @Post('withdraw-revert')
  @SagaCompensate(Bank.withdraw)
  withdrawRevert(@Body() m: BranchPayload<typeof Bank.withdraw>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      state.calls.push(`withdraw-revert ${m.account} ${m.amount}`);
      // the action of an invalid payload never ran: nothing to put back
      if (typeof m?.account === 'string' && m.amount > 0 && state.calls.includes(`withdraw ${m.account} ${m.amount}`)) state.balances[m.account] += m.amount;
    });
  }

  @Post('deposit')
  @SagaAction('deposit', { compensate: false })
  deposit(@Body(WholeAmount) m: Movement, @BranchContext() b: BranchInfo) {
    once(b, () => {
      state.calls.push(`deposit ${m.account} ${m.amount}`);
      move(m.account, m.amount);
    });
  }

  @Post('hold-try')
  @TccTry(Bank.hold)
  holdTry(@Body() m: BranchPayload<typeof Bank.hold>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      state.calls.push(`hold-try ${m.account} ${m.amount}`);
      move(m.account, -m.amount);
      state.held += m.amount;
    });
  }

  @Post('hold-confirm')
  @TccConfirm(Bank.hold)
  holdConfirm(@Body() m: BranchPayload<typeof Bank.hold>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      state.calls.push(`hold-confirm ${m.account} ${m.amount}`);
      state.held -= m.amount;
    });
  }

  @Post('hold-cancel')
  @TccCancel(Bank.hold)
  holdCancel(@Body() m: BranchPayload<typeof Bank.hold>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      state.calls.push(`hold-cancel ${m.account} ${m.amount}`);
      if (state.calls.includes(`hold-try ${m.account} ${m.amount}`)) {
        state.balances[m.account] += m.amount;
        state.held -= m.amount;
      }
    });
  }

  @Post('credit')
  @MsgBranch(Bank.credit)
  credit(@Body() m: BranchPayload<typeof Bank.credit>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      state.calls.push(`credit ${m.account} ${m.amount}`);
      move(m.account, m.amount);
    });
  }
}

const port = Number(process.env.PORT);

@Module({
  imports: [
    DtmModule.forRoot({
      config: { serverUrl: process.env.DTM_URL!, grpcServer: process.env.DTM_GRPC!, appUrl: `http://127.0.0.1:${port}`, publishBranches: true, retryInterval: 1, ...(process.env.BRANCH_AUTH_KEY ? { branchAuthKeys: [process.env.BRANCH_AUTH_KEY] } : {}) },
    }),
  ],
  controllers: [BankController],
})
class BankModule {}

const app = await NestFactory.create(BankModule, { logger: ['error', 'warn'] });
await app.listen(port, '127.0.0.1');
process.stdout.write('ready\n');
