import { ConflictException, Injectable } from '@nestjs/common';

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

  /** Takes `amount` out of `account`; a 409 (DTM's FAILURE) if the balance would go negative. */
  withdraw(account: string, amount: number): { account: string; balance: number } {
    const balance = this.balance(account) - amount;
    if (balance < 0) throw new ConflictException(`insufficient funds in ${account}: ${this.balance(account)} < ${amount}`);
    return this.set(account, balance);
  }

  /** Adds `amount` to `account` (a negative amount takes it back). */
  deposit(account: string, amount: number): { account: string; balance: number } {
    return this.set(account, this.balance(account) + amount);
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.balances);
  }

  private balance(account: string): number {
    return this.balances.get(account) ?? 0;
  }

  private set(account: string, balance: number): { account: string; balance: number } {
    this.balances.set(account, balance);
    return { account, balance };
  }
}
