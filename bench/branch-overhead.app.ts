// The app under load for bench/branch-overhead.ts, run as a child process:
//   node .build/bench/branch-overhead.app.js dtm   [http|grpc] -> DtmModule + a @SagaAction branch
//   node .build/bench/branch-overhead.app.js plain [http|grpc] -> plain Nest, the same handler without the library
//   node .build/bench/branch-overhead.app.js dtm-plain [http|grpc] -> DtmModule, the plain handler (the module's cost on other routes / methods)
//   node .build/bench/branch-overhead.app.js auth  [http|grpc] -> as dtm, with authenticated branch calls (key from BENCH_AUTH_KEY)
//   node .build/bench/branch-overhead.app.js off   [http|grpc] -> as dtm, its instrumentation off (`openTelemetry: false`)
//   node .build/bench/branch-overhead.app.js otel  [http|grpc] -> as dtm, with an OpenTelemetry SDK registered that exports nowhere (bench/otel-sdk.ts)
//   node .build/bench/branch-overhead.app.js sdk-off [http|grpc] -> the same SDK registered, the module's instrumentation off
//   node --import .build/bench/otel-preload.js .build/bench/branch-overhead.app.js inst|inst-off [http|grpc] -> as otel / sdk-off,
//        the SDK with its HTTP and gRPC instrumentations (registered by the preload, before the app loads)
// http (the default): an Express app, the handler a POST route; it prints `port N`.
// fastify: the same on Nest's Fastify adapter.
// grpc: a hybrid app (Express + a gRPC microservice on GRPC_PORT, as the README's main.ts), the
// handler a @GrpcMethod of bench.BranchBench (bench/bench.proto), the HTTP side serving nothing;
// it prints `grpc port N`, then `port N`.
// Both do the same work (sum the amounts of the order) and answer it (200 / OK).
import 'reflect-metadata';
import { Body, Controller, HttpCode, Module, Post, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DtmModule, SagaAction } from 'nestjs-dtm';
import { listenBenchApp } from './bench-app.js';
import { registerDroppingOtelSdk } from './otel-sdk.js';

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

// gRPC: @nestjs/microservices is loaded only then, so that the HTTP apps load what they did before
const [mode = 'plain', transport = 'http'] = process.argv.slice(2);
const grpcPort = Number(process.env.GRPC_PORT ?? 0);
const grpc = transport === 'grpc';
const microservices = grpc ? await import('@nestjs/microservices') : undefined;
const fastify = transport === 'fastify' ? await import('@nestjs/platform-fastify') : undefined;

function grpcControllers() {
  const { GrpcMethod, Payload } = microservices!;

  @Controller()
  class DecoratedGrpcController {
    @GrpcMethod('BranchBench', 'Branch')
    @SagaAction('bench', { compensate: false })
    branch(@Payload() order: Order) {
      return work(order);
    }
  }

  @Controller()
  class PlainGrpcController {
    @GrpcMethod('BranchBench', 'Branch')
    branch(@Payload() order: Order) {
      return work(order);
    }
  }
  return { decorated: DecoratedGrpcController, plain: PlainGrpcController };
}

const { decorated, plain } = grpc ? grpcControllers() : { decorated: DecoratedController, plain: PlainController };
const dtm = () =>
  DtmModule.forRoot({
    config: {
      serverUrl: 'http://127.0.0.1:1/api/dtmsvr',
      ...(grpc ? { grpcAppAddress: `127.0.0.1:${grpcPort}` } : {}),
      ...(mode === 'auth' ? { branchAuthKeys: [process.env.BENCH_AUTH_KEY!] } : {}),
    },
    // BENCH_AA (--aa): the instrumentation off in the apps that have it on, too (an A/A run: the pairs' two apps the same)
    ...(mode === 'off' || mode === 'sdk-off' || mode === 'inst-off' || (process.env.BENCH_AA === '1' && ['dtm', 'otel', 'inst'].includes(mode)) ? { instrumentation: { openTelemetry: false } } : {}),
  });
if (mode === 'otel' || mode === 'sdk-off') registerDroppingOtelSdk();

function moduleOf(imports: unknown[], controller: Type): Type {
  @Module({ imports: imports as never[], controllers: [controller] })
  class AppModule {}
  return AppModule;
}

const appModule = ['dtm', 'auth', 'off', 'otel', 'sdk-off', 'inst', 'inst-off'].includes(mode) ? moduleOf([dtm()], decorated) : mode === 'dtm-plain' ? moduleOf([dtm()], plain) : moduleOf([], plain);
const app = fastify
  ? await NestFactory.create(appModule, new fastify.FastifyAdapter(), { logger: ['error'] })
  : await NestFactory.create(appModule, { logger: ['error'] });
await listenBenchApp(app, microservices, grpcPort);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
