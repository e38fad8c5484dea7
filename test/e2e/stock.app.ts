// The stock of services-by-name.spec.ts, a gRPC-only participant (a Nest microservice, no HTTP
// server) run as its own process (environment: GRPC_PORT, DTM_URL, DTM_GRPC; GUARDED=1 adds a global
// guard written as the module advises; UNPUBLISHED=1 turns publish_branches off). It publishes its
// branches over gRPC (nestjs_dtm.Branches/Manifest: DTM_BRANCHES_PROTO loaded beside its own proto),
// as the contract Stock of shop-contracts.ts names them; Level answers the stock of a sku. Each call
// runs once per gid, branch and op (see once()).
import 'reflect-metadata';
import { Controller, Injectable, Module, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { APP_GUARD, NestFactory } from '@nestjs/core';
import { GrpcMethod, Payload, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import type { Metadata } from '@grpc/grpc-js';
import { BranchContext, DTM_BRANCHES_PROTO, DtmFailureError, DtmModule, isDtmBranchHandler, MsgBranch, SagaAction, SagaCompensate, TccCancel, TccConfirm, TccTry, type BranchInfo, type BranchPayload } from 'nestjs-dtm';
import { Stock } from './shop-contracts.js';
import { STOCK_PROTO, TESTS_LOADER } from '../support/grpc.js';
import { oncePerCall } from '../support/once-per-call.js';


const level = { available: 10, reserved: 0, shipped: 0 };
const calls: string[] = [];
/** Runs a call's business once per gid, branch and op (DTM calls a branch at least once). */
const once = oncePerCall();

@Controller()
class StockController {
  @GrpcMethod('Stock', 'Take')
  @SagaAction(Stock.take)
  take(@Payload() i: BranchPayload<typeof Stock.take>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      calls.push(`take ${i.qty}`);
      if (level.available < i.qty) throw new DtmFailureError(`only ${level.available} ${i.sku} left`);
      level.available -= i.qty;
    });
  }

  @GrpcMethod('Stock', 'TakeRevert')
  @SagaCompensate(Stock.take)
  takeRevert(@Payload() i: BranchPayload<typeof Stock.take>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      if (calls.includes(`take ${i.qty}`)) level.available += i.qty;
      calls.push(`take-revert ${i.qty}`);
    });
  }

  @GrpcMethod('Stock', 'ReserveTry')
  @TccTry(Stock.reserve)
  reserveTry(@Payload() i: BranchPayload<typeof Stock.reserve>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      if (level.available < i.qty) throw new DtmFailureError(`only ${level.available} ${i.sku} left`);
      level.available -= i.qty;
      level.reserved += i.qty;
    });
  }

  @GrpcMethod('Stock', 'ReserveConfirm')
  @TccConfirm(Stock.reserve)
  reserveConfirm(@Payload() i: BranchPayload<typeof Stock.reserve>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      level.reserved -= i.qty;
      level.shipped += i.qty;
    });
  }

  @GrpcMethod('Stock', 'ReserveCancel')
  @TccCancel(Stock.reserve)
  reserveCancel(@Payload() i: BranchPayload<typeof Stock.reserve>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      level.reserved -= i.qty;
      level.available += i.qty;
    });
  }

  @GrpcMethod('Stock', 'Ship')
  @MsgBranch(Stock.ship)
  ship(@Payload() i: BranchPayload<typeof Stock.ship>, @BranchContext() b: BranchInfo) {
    once(b, () => {
      level.shipped += i.qty;
    });
  }

  @GrpcMethod('Stock', 'Level')
  level() {
    return level;
  }
}

/** A global guard as the module advises: the module's handlers pass (isDtmBranchHandler), any other call needs `authorization` metadata. */
@Injectable()
class SessionGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return isDtmBranchHandler(context.getHandler()) || context.switchToRpc().getContext<Metadata>().get('authorization').length > 0;
  }
}

const grpcAddress = `127.0.0.1:${process.env.GRPC_PORT}`;

@Module({
  imports: [DtmModule.forRoot({ config: { serverUrl: process.env.DTM_URL!, grpcServer: process.env.DTM_GRPC!, grpcAppAddress: grpcAddress, publishBranches: !process.env.UNPUBLISHED, retryInterval: 1, ...(process.env.BRANCH_AUTH_KEY ? { branchAuthKeys: [process.env.BRANCH_AUTH_KEY] } : {}) } })],
  controllers: [StockController],
  providers: process.env.GUARDED ? [{ provide: APP_GUARD, useClass: SessionGuard }] : [],
})
class StockModule {}

const app = await NestFactory.createMicroservice<MicroserviceOptions>(StockModule, {
  logger: ['error', 'warn'],
  transport: Transport.GRPC,
  options: { package: ['stock', 'nestjs_dtm'], protoPath: [STOCK_PROTO, DTM_BRANCHES_PROTO], url: grpcAddress, loader: TESTS_LOADER },
});
await app.listen();
process.stdout.write('ready\n');
