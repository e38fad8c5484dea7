// src/accounts.ts
import { Injectable } from '@nestjs/common';

/** In-memory balances; each branch call is applied at most once (by gid and branch id), as a barrier would. */
@Injectable()
export class Accounts {
  private readonly balances = new Map<string, number>();
  private readonly applied = new Set<string>();

  open(name: string, balance: number): void {
    this.balances.set(name, balance);
  }

  balance(name: string): number | undefined {
    return this.balances.get(name);
  }

  /** Adds `amount` (negative: takes it) once per `key`; false when the account is missing or would go below zero. */
  apply(key: string, name: string, amount: number): boolean {
    if (this.applied.has(key)) return true;
    const balance = this.balances.get(name);
    if (balance === undefined || balance + amount < 0) return false;
    this.balances.set(name, balance + amount);
    this.applied.add(key);
    return true;
  }

  /** Undoes what `apply(key, ...)` did, if it did anything. */
  undo(key: string, name: string, amount: number): void {
    if (!this.applied.delete(key)) return;
    this.balances.set(name, (this.balances.get(name) ?? 0) - amount);
  }
}
