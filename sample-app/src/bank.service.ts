import { Injectable } from '@nestjs/common';

/** Body of every transfer branch. */
export interface TransferRequest {
  from: string;
  to: string;
  amount: number;
}

/** In-memory balances (the database-backed banks come with the barrier and XA work). */
@Injectable()
export class BankService {
  private readonly balances = new Map<string, number>([
    ['alice', 100],
    ['bob', 0],
  ]);

  adjust(account: string, delta: number): { account: string; balance: number } {
    const balance = (this.balances.get(account) ?? 0) + delta;
    this.balances.set(account, balance);
    return { account, balance };
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.balances);
  }
}
