/** One order of the shop: what every shop branch receives. */
export interface Order {
  orderId: string;
  sku: string;
  qty: number;
  customer: string;
  /** Price to pay. */
  amount: number;
  address: string;
}
