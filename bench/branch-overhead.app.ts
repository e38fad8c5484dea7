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
//   node [--import .build/bench/otel-preload.js] .build/bench/branch-overhead.app.js sdk-hand|inst-hand [http|grpc] -> as
//        sdk-off / inst-off, the handler giving the call by hand, with @opentelemetry/api, the telemetry the
//        module gives it (see byHand below): what OpenTelemetry itself costs for it, without the module's seam
// http (the default): an Express app, the handler a POST route; it prints `port N`.
// fastify: the same on Nest's Fastify adapter.
// grpc: a hybrid app (Express + a gRPC microservice on GRPC_PORT, as the README's main.ts), the
// handler a @GrpcMethod of bench.BranchBench (bench/bench.proto), the HTTP side serving nothing;
// it prints `grpc port N`, then `port N`.
// Both do the same work (sum the amounts of the order) and answer it (200 / OK).
import 'reflect-metadata';
import { Body, Controller, HttpCode, Module, Post, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { context, metrics, trace, type Span } from '@opentelemetry/api';
import { DtmModule, SagaAction } from 'nestjs-dtm';
import { listenBenchApp } from './bench-app.js';
import { registerDroppingOtelSdk } from './otel-sdk.js';

interface Order {
  lines: { sku: string; amount: number }[];
}

const work = (order: Order) => ({ ok: true, total: order.lines.reduce((sum, l) => sum + l.amount, 0) });

// sdk-hand / inst-hand: what the module's instrumentation gives a branch call, written by hand with
// @opentelemetry/api, at the least it can cost: the `dtm.*` attributes on the call's server span
// when an instrumentation made one, else on a span of its own (a child of the bench's traceparent,
// the handler run in its context), and the duration in an attribute-free histogram. The values are
// the bench request's (nothing read from the call), and nothing is counted by attribute: a floor
// for the module's figures, not a copy of the module.
const [mode = 'plain', transport = 'http'] = process.argv.slice(2);
const byHandMode = mode === 'sdk-hand' || mode === 'inst-hand';
const benchParent = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1, isRemote: true };
let handTelemetry: { tracer: ReturnType<typeof trace.getTracer>; duration: ReturnType<ReturnType<typeof metrics.getMeter>['createHistogram']> } | undefined;
function byHand<T>(run: () => T): T {
  handTelemetry ??= { tracer: trace.getTracer('bench-by-hand'), duration: metrics.getMeter('bench-by-hand').createHistogram('bench.branch.duration', { unit: 's' }) };
  const started = performance.now();
  const active = context.active();
  let span: Span | undefined = trace.getSpan(active);
  const own = span === undefined;
  let result: T;
  if (own) {
    const parent = trace.setSpanContext(active, benchParent);
    span = handTelemetry.tracer.startSpan('DTM saga action bench', undefined, parent);
    result = context.with(trace.setSpan(parent, span), run);
  } else result = run();
  span!.setAttribute('dtm.gid', 'BenchGid0000000000001');
  span!.setAttribute('dtm.trans_type', 'saga');
  span!.setAttribute('dtm.branch_id', '01');
  span!.setAttribute('dtm.op', 'action');
  span!.setAttribute('dtm.branch.name', 'bench');
  span!.setAttribute('dtm.protocol', transport === 'grpc' ? 'grpc' : 'http');
  span!.setAttribute('dtm.outcome', 'success');
  if (own) span!.end();
  handTelemetry.duration.record((performance.now() - started) / 1000);
  return result;
}
const serve = byHandMode ? (order: Order) => byHand(() => work(order)) : work;

@Controller('bench')
class DecoratedController {
  @Post('branch')
  @SagaAction('bench', { compensate: false })
  branch(@Body() order: Order) {
    return serve(order);
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
      return serve(order);
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
    ...(mode === 'off' || mode === 'sdk-off' || mode === 'inst-off' || byHandMode || (process.env.BENCH_AA === '1' && ['dtm', 'otel', 'inst'].includes(mode)) ? { instrumentation: { openTelemetry: false } } : {}),
  });
if (mode === 'otel' || mode === 'sdk-off' || mode === 'sdk-hand') registerDroppingOtelSdk();

function moduleOf(imports: unknown[], controller: Type): Type {
  @Module({ imports: imports as never[], controllers: [controller] })
  class AppModule {}
  return AppModule;
}

const appModule = ['dtm', 'auth', 'off', 'otel', 'sdk-off', 'inst', 'inst-off', 'sdk-hand', 'inst-hand'].includes(mode) ? moduleOf([dtm()], decorated) : mode === 'dtm-plain' ? moduleOf([dtm()], plain) : moduleOf([], plain);
const app = fastify
  ? await NestFactory.create(appModule, new fastify.FastifyAdapter(), { logger: ['error'] })
  : await NestFactory.create(appModule, { logger: ['error'] });
await listenBenchApp(app, microservices, grpcPort);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
