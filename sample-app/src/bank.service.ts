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

  /** Whether `account` holds at least `amount`. */
  canWithdraw(account: string, amount: number): boolean {
    return this.balance(account) >= amount;
  }

  /** Adds `amount` to `account` (a negative amount takes it out). */
  deposit(account: string, amount: number): { account: string; balance: number } {
    const balance = this.balance(account) + amount;
    this.balances.set(account, balance);
    return { account, balance };
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.balances);
  }

  private balance(account: string): number {
    return this.balances.get(account) ?? 0;
  }
}
