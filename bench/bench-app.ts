// Shared by the benchmark apps (bench/*.app.ts, child processes) and their load generators: where
// bench/bench.proto is, how it is loaded, and how an app under load starts listening. Imports
// nothing heavy, so that an HTTP-only app loads what it did before gRPC.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { INestApplication } from '@nestjs/common';

/** The project's root: the nearest directory with a package.json (this file runs compiled, from .build/bench/). */
function projectRoot(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** bench/bench.proto (package `bench`): the gRPC services of the benchmark apps. */
export const BENCH_PROTO = join(projectRoot(), 'bench', 'bench.proto');

/** How the benchmark apps load it: int64 as numbers. */
export const BENCH_LOADER = { longs: Number } as const;

/**
 * Starts a benchmark app: with `microservices` (gRPC), a Nest gRPC microservice of bench.proto on
 * 127.0.0.1:`grpcPort` as the README's hybrid main.ts does, announced as `grpc port N`; then the
 * HTTP listener, announced as `port N` (what bench/load.ts's startAppProcess waits for).
 */
export async function listenBenchApp(app: INestApplication, microservices: typeof import('@nestjs/microservices') | undefined, grpcPort: number): Promise<void> {
  if (microservices) {
    if (!grpcPort) throw new Error('GRPC_PORT is not set');
    app.connectMicroservice(
      { transport: microservices.Transport.GRPC, options: { package: 'bench', protoPath: BENCH_PROTO, url: `127.0.0.1:${grpcPort}`, loader: BENCH_LOADER } },
      { inheritAppConfig: true },
    );
    await app.startAllMicroservices();
    process.stdout.write(`grpc port ${grpcPort}\n`);
  }
  await app.listen(0, '127.0.0.1');
  process.stdout.write(`port ${(app.getHttpServer().address() as { port: number }).port}\n`);
}
