// src/bank.controller.spec.ts
import { Test, TestingModule } from '@nestjs/testing';
import { DtmFailureError } from 'nestjs-dtm';
import { Accounts } from './accounts';
import { BankController } from './bank.controller';

describe('BankController', () => {
  let bank: BankController;
  let accounts: Accounts;

  beforeEach(async () => {
    const app: TestingModule = await Test.createTestingModule({
      controllers: [BankController],
      providers: [Accounts],
    }).compile();

    bank = app.get(BankController);
    accounts = app.get(Accounts);
    accounts.open('alice', 100);
  });

  it('withdraws once per branch call, and refuses more than the balance with DTM FAILURE', () => {
    const call = { gid: 'g1', branchId: '01' };
    bank.withdraw({ account: 'alice', amount: 30 }, call);
    bank.withdraw({ account: 'alice', amount: 30 }, call); // DTM retried: applied once
    expect(accounts.balance('alice')).toBe(70);
    expect(() => bank.withdraw({ account: 'alice', amount: 500 }, { gid: 'g2', branchId: '01' })).toThrow(DtmFailureError);
  });

  it('compensates only what was applied', () => {
    bank.giveBack({ account: 'alice', amount: 30 }, { gid: 'g3', branchId: '01' }); // never withdrawn
    expect(accounts.balance('alice')).toBe(100);
  });
});
