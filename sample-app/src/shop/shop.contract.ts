// The shop's branch contracts: what its inventory, payment and shipping serve, by name and payload
// type. Imported by the controllers that serve them and by ShopService, which adds them by name
// (lynx.dtm.services.shop in config.yaml; in a real system, a module the services share). The
// inventory's branches check the order with a Standard Schema (written out here: zod, valibot or
// arktype schemas plug in the same way): ShopService refuses an invalid order before anything reaches DTM,
// and a caller without the schema gets FAILURE from the inventory, not a retry.
import { defineBranches, msgBranch, sagaBranch, tccBranch, type StandardSchemaV1 } from 'nestjs-dtm';
import type { Order } from './shop.types.js';

/** An {@link Order} with a positive whole quantity, a non-negative amount, a sku and a customer. */
const order: StandardSchemaV1<Order> = {
  '~standard': {
    version: 1,
    vendor: 'sample-app',
    validate(value) {
      const o = value as Partial<Order> | null;
      const issues: { message: string; path: string[] }[] = [];
      if (!Number.isInteger(o?.qty) || o!.qty! <= 0) issues.push({ message: 'must be a positive whole number', path: ['qty'] });
      if (typeof o?.amount !== 'number' || o.amount < 0) issues.push({ message: 'must be a number >= 0', path: ['amount'] });
      for (const key of ['orderId', 'sku', 'customer'] as const) if (typeof o?.[key] !== 'string' || o[key] === '') issues.push({ message: 'is required', path: [key] });
      return issues.length > 0 ? { issues } : { value: o as Order };
    },
  },
};

/** Stock: take (saga), reserve (TCC). */
export const Inventory = defineBranches('shop', { take: sagaBranch(order), reserve: tccBranch(order) });
/** Wallets: charge (saga), freeze (TCC). */
export const Payment = defineBranches('shop', { charge: sagaBranch<Order>(), freeze: tccBranch<Order>() });
/** Shipments: ship (saga), notify (message). */
export const Shipping = defineBranches('shop', { ship: sagaBranch<Order>(), notify: msgBranch<Order>() });
