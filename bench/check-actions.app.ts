// The app under load for bench/check-actions.ts, run as a child process: one decorated saga action
// that does no work of its own (so that what is left is the module's), with authenticated branch
// calls (BRANCH_AUTH_KEY) and, with CHECK_ACTIONS=1, `branch_auth_check_actions`: each call of it is
// checked against DTM's record (DTM_URL) before it runs.
import 'reflect-metadata';
import { Body, Controller, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DtmModule, SagaAction } from 'nestjs-dtm';
import { listenBenchApp } from './bench-app.js';

@Controller('bench')
class Bench {
  @Post('step')
  @SagaAction('bench.step', { compensate: false })
  step(@Body() body: { n: number }): void {
    void body; // nothing to do: what is measured is the module's work
  }
}

@Module({
  imports: [
    DtmModule.forRoot({
      config: { serverUrl: process.env.DTM_URL!, branchAuthKeys: [process.env.BRANCH_AUTH_KEY!], branchAuthCheckActions: process.env.CHECK_ACTIONS === '1' },
    }),
  ],
  controllers: [Bench],
})
class BenchModule {}

// forceCloseConnections: DTM keeps its connections to a branch app alive and may be calling on one at the
// SIGTERM; without it app.close() waits until DTM lets it go (its idle timeout, 90 s), and the benchmark with it
const app = await NestFactory.create(BenchModule, { logger: ['error'], forceCloseConnections: true });
await listenBenchApp(app, undefined, 0);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
