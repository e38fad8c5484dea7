// The orders service of services-by-name.spec.ts: the caller, run as its own process (environment:
// PORT, DTM_URL, DTM_GRPC, BANK_URL, BANK_REFRESH, STOCK_GRPC, STOCK_REFRESH; CONTRACT_TYPO=1 adds a contract
// naming a branch the bank does not have, which must fail start-up). It adds the bank's (HTTP) and
// the stock's (gRPC) branches by name, from the contracts of shop-contracts.ts, and answers each
// transaction's gid and outcome, or the error that refused it.
import 'reflect-metadata';
import { Body, Controller, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DtmClient, DtmError, DtmModule, defineBranches, sagaBranch, type Payload } from 'nestjs-dtm';
import { Bank, Stock, type Item, type Movement } from './shop-contracts.js';
import { STOCK_PROTO, TESTS_LOADER } from '../support/grpc.js';

interface OrderRequest {
  movement: Movement;
  item: Item;
  /** `raw`: the saga adds `{ service, branch }` (untyped) with this payload, as a caller with an older contract would. */
  raw?: { ref: { service: string; branch: string }; payload: Payload };
  protocol?: 'http' | 'grpc';
}

@Controller('orders')
class OrdersController {
  constructor(private readonly dtm: DtmClient) {}

  /** Runs `body`; answers its outcome, or the error's class, problem and message. */
  private async answer(gid: string, body: () => Promise<unknown>): Promise<object> {
    try {
      await body();
      const final = await this.dtm.waitForFinal(gid, { timeout: 20 });
      return { gid, status: final.status, rollbackReason: final.rollbackReason };
    } catch (err) {
      if (!(err instanceof DtmError)) throw err;
      return { gid, error: err.name, problem: (err as { problem?: string }).problem, message: err.message };
    }
  }

  @Post('saga')
  async saga(@Body() o: OrderRequest) {
    const gid = await this.dtm.generateGid();
    return this.answer(gid, async () => {
      const saga = this.dtm.newSaga(gid, { protocol: o.protocol ?? 'grpc' });
      if (o.raw) saga.add(o.raw.ref, o.raw.payload);
      else saga.add(Bank.withdraw, o.movement).add(Stock.take, o.item);
      await saga.submit();
    });
  }

  @Post('tcc')
  async tcc(@Body() o: OrderRequest) {
    const gid = await this.dtm.generateGid();
    return this.answer(gid, () =>
      this.dtm
        .tccGlobalTransaction(
          gid,
          async (tcc) => {
            await tcc.callBranch(o.movement, Bank.hold);
            await tcc.callBranch(o.item, Stock.reserve);
          },
          { protocol: 'grpc' },
        )
        .catch(async (err: unknown) => {
          // a refused Try: the transaction is rolled back, its outcome is what DTM records
          if (err instanceof DtmError && err.name === 'DtmFailureError') return;
          throw err;
        }),
    );
  }

  @Post('msg')
  async msg(@Body() o: OrderRequest) {
    const gid = await this.dtm.generateGid();
    return this.answer(gid, () => this.dtm.newMsg(gid, { protocol: 'grpc' }).add(Bank.credit, o.movement).add(Stock.ship, o.item).submit());
  }
}

/** A contract that drifted from the bank's: a misspelt branch. */
const Drifted = defineBranches('bank', { withdrw: sagaBranch<Movement>() });

@Module({
  imports: [
    DtmModule.forRoot({
      config: {
        serverUrl: process.env.DTM_URL!,
        grpcServer: process.env.DTM_GRPC!,
        retryInterval: 1,
        ...(process.env.BRANCH_AUTH_KEY ? { branchAuthKeys: [process.env.BRANCH_AUTH_KEY] } : {}),
        services: {
          bank: { url: process.env.BANK_URL!, refresh: Number(process.env.BANK_REFRESH ?? 30) },
          stock: { grpc: process.env.STOCK_GRPC!, refresh: Number(process.env.STOCK_REFRESH ?? 30) },
        },
      },
      contracts: process.env.CONTRACT_TYPO ? [Bank, Stock, Drifted] : [Bank, Stock],
      grpcProtos: { protoPath: STOCK_PROTO, loader: TESTS_LOADER },
    }),
  ],
  controllers: [OrdersController],
})
class OrdersModule {}

const app = await NestFactory.create(OrdersModule, { logger: ['error', 'warn'] });
await app.listen(Number(process.env.PORT), '127.0.0.1');
process.stdout.write('ready\n');
