// The contracts of services-by-name.spec.ts's participants, imported by them and by the orders
// service that calls them: the bank (HTTP) and the stock (gRPC only). The bank's withdraw carries a
// Standard Schema (written here, as any validator's would be: the module depends on none), so the
// bank answers an invalid payload FAILURE; its hold and credit carry it too (a caller using the
// contract checks all three before anything reaches DTM).
import { defineBranches, msgBranch, sagaBranch, tccBranch, type StandardSchemaV1 } from 'nestjs-dtm';

/** A bank movement. */
export interface Movement {
  account: string;
  amount: number;
}

/** A stock movement (the proto's stock.Item). */
export interface Item {
  sku: string;
  qty: number;
}

/** A Standard Schema of {@link Movement}: `account` a non-empty string, `amount` a positive number. */
export const movementSchema: StandardSchemaV1<Movement> = {
  '~standard': {
    version: 1,
    vendor: 'nestjs-dtm-tests',
    validate(value) {
      const v = value as Partial<Movement> | null;
      const issues: { message: string; path: string[] }[] = [];
      if (typeof v?.account !== 'string' || v.account === '') issues.push({ message: 'must be a non-empty string', path: ['account'] });
      if (typeof v?.amount !== 'number' || !(v.amount > 0)) issues.push({ message: 'must be a positive number', path: ['amount'] });
      return issues.length > 0 ? { issues } : { value: v as Movement };
    },
  },
};

/** The bank's branches (an HTTP service). */
export const Bank = defineBranches('bank', {
  withdraw: sagaBranch(movementSchema),
  hold: tccBranch(movementSchema),
  credit: msgBranch(movementSchema),
});

/** The stock's branches (a gRPC-only service). */
export const Stock = defineBranches('stock', {
  take: sagaBranch<Item>(),
  reserve: tccBranch<Item>(),
  ship: msgBranch<Item>(),
});
