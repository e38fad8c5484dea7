// The app under load for bench/branch-overhead.ts, run as a child process:
//   node .build/bench/branch-overhead.app.js dtm     -> DtmModule + a @SagaAction endpoint
//   node .build/bench/branch-overhead.app.js plain   -> plain Nest, the same endpoint without the library
//   node .build/bench/branch-overhead.app.js dtm-plain -> DtmModule, the plain endpoint (the module's cost on other routes)
// Both do the same work (sum the amounts of the body) and answer 200; it prints its port.
import 'reflect-metadata';
import { Body, Controller, HttpCode, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DtmModule, SagaAction } from 'nestjs-dtm';

interface Order {
  lines: { sku: string; amount: number }[];
}

const work = (order: Order) => ({ ok: true, total: order.lines.reduce((sum, l) => sum + l.amount, 0) });

@Controller('bench')
class DecoratedController {
  @Post('branch')
  @SagaAction('bench', { compensate: false })
  branch(@Body() order: Order) {
    return work(order);
  }
}

@Controller('bench')
class PlainController {
  @Post('branch')
  @HttpCode(200)
  branch(@Body() order: Order) {
    return work(order);
  }
}

@Module({ imports: [DtmModule.forRoot({ config: { serverUrl: 'http://127.0.0.1:1/api/dtmsvr' } })], controllers: [DecoratedController] })
class DtmAppModule {}

@Module({ imports: [DtmModule.forRoot({ config: { serverUrl: 'http://127.0.0.1:1/api/dtmsvr' } })], controllers: [PlainController] })
class DtmPlainAppModule {}

@Module({ controllers: [PlainController] })
class PlainAppModule {}

const mode = process.argv[2];
const app = await NestFactory.create(mode === 'dtm' ? DtmAppModule : mode === 'dtm-plain' ? DtmPlainAppModule : PlainAppModule, { logger: ['error'] });
await app.listen(0, '127.0.0.1');
process.stdout.write(`port ${(app.getHttpServer().address() as { port: number }).port}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
