// A type-level test, compiled by the project's type check (`npm test` runs it before any test): each
// `@ts-expect-error` line must fail to compile, so a payload or kind that does not match a branch
// contract is caught at compile time, on the caller's side and on the participant's. Never run.
import { Body, Controller, Post } from '@nestjs/common';
import { MsgBranch, SagaAction, SagaCompensate, TccConfirm, TccTry, type BranchPayload, type DtmClient, type Msg, type Saga, type StandardSchemaV1, type Tcc, type Xa } from 'nestjs-dtm';
import { defineBranches, msgBranch, sagaBranch, xaBranch } from 'nestjs-dtm';
import { Bank, Stock, type Movement } from '../e2e/shop-contracts.js';

const Ledger = defineBranches('ledger', { post: xaBranch<{ entry: string }>() });
declare const aSchema: StandardSchemaV1;
// a schema without an input type (StandardSchemaV1 as written here; zod's z.preprocess, z.unknown()), or
// a payload typed unknown: the entry takes any payload, checked at run time only, and keeps its kind
const Audit = defineBranches('audit', { record: sagaBranch(aSchema), note: msgBranch<unknown>() });
// a schema whose input is typed any (zod's z.any()): the entry's payload stays any, as sagaBranch<any>() says
declare const anySchema: StandardSchemaV1<ReturnType<typeof JSON.parse>>;
const Loose = defineBranches('loose', { entry: sagaBranch(anySchema) });
const loose: BranchPayload<typeof Loose.entry> = { amount: 1 };
void (loose.amount satisfies number);
void Loose;

export function caller(saga: Saga, msg: Msg, tcc: Tcc, xa: Xa, dtm: DtmClient): void {
  // what compiles: each payload as its contract says
  saga.add(Bank.withdraw, { account: 'alice', amount: 30 }).add(Stock.take, { sku: 'widget', qty: 1 });
  msg.add(Bank.credit, { account: 'bob', amount: 5 });
  void tcc.callBranch({ sku: 'widget', qty: 2 }, Stock.reserve);
  void xa.callBranch({ entry: 'x' }, Ledger.post);
  // untyped by name: any payload
  saga.add({ service: 'bank', branch: 'withdraw' }, { anything: true });
  saga.add(Audit.record, { anything: true });
  msg.add(Audit.note, 'text');
  void dtm;

  // @ts-expect-error a misspelt field (amout)
  saga.add(Bank.withdraw, { account: 'alice', amout: 30 });
  // @ts-expect-error a field of the wrong type
  saga.add(Bank.withdraw, { account: 'alice', amount: '30' });
  // @ts-expect-error a missing field
  saga.add(Stock.take, { sku: 'widget' });
  // @ts-expect-error a TCC branch as a saga step
  saga.add(Bank.hold, { account: 'alice', amount: 30 });
  // @ts-expect-error a saga step as a message branch
  msg.add(Bank.withdraw, { account: 'alice', amount: 30 });
  // @ts-expect-error a TCC Try with another branch's payload
  void tcc.callBranch({ account: 'alice', amount: 30 }, Stock.reserve);
  // @ts-expect-error a saga step as a TCC branch
  void tcc.callBranch({ account: 'alice', amount: 30 }, Bank.withdraw);
  // @ts-expect-error an XA branch's payload of the wrong type
  void xa.callBranch({ entry: 1 }, Ledger.post);
  // @ts-expect-error a branch the contract does not have
  saga.add(Bank.withdrw, { account: 'alice', amount: 30 });
  // @ts-expect-error an untyped entry still has its kind: a message branch as a saga step
  saga.add(Audit.note, 'text');
  // @ts-expect-error an untyped entry still takes a payload only (a bigint is none)
  saga.add(Audit.record, 1n);
}

// the participant: the handler receives the contract's payload type
const movement: BranchPayload<typeof Bank.withdraw> = { account: 'alice', amount: 1 };
const asMovement: Movement = movement;
void asMovement;
// @ts-expect-error BranchPayload is the contract's type
const wrong: BranchPayload<typeof Stock.take> = { account: 'alice', amount: 1 };
void wrong;

@Controller('types')
export class TypedParticipant {
  @Post('withdraw')
  @SagaAction(Bank.withdraw)
  withdraw(@Body() m: BranchPayload<typeof Bank.withdraw>): number {
    return m.amount;
  }

  @Post('withdraw-revert')
  @SagaCompensate(Bank.withdraw)
  revert(@Body() m: BranchPayload<typeof Bank.withdraw>): string {
    return m.account;
  }

  // an untyped entry names its handler as a typed one does
  @Post('audit')
  @SagaAction(Audit.record, { compensate: false })
  audit(@Body() entry: BranchPayload<typeof Audit.record>): void {
    void entry;
  }

  // @ts-expect-error a TCC decorator given a saga step
  @TccTry(Bank.withdraw)
  @Post('try')
  wrongKind(): void {}

  // a schema only where DTM rolls back on FAILURE (it retries the others' FAILURE forever)
  @TccTry('hold', { schema: aSchema })
  @Post('hold')
  hold(): void {}

  // @ts-expect-error a schema on a Confirm
  @TccConfirm('hold', { schema: aSchema })
  @Post('hold-confirm')
  holdConfirm(): void {}

  // @ts-expect-error a schema on a message branch
  @MsgBranch('credit', { schema: aSchema })
  @Post('credit')
  credit(): void {}
}
