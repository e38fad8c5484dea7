// The gRPC libraries, loaded on first use: @grpc/grpc-js and @grpc/proto-loader are optional peer
// dependencies, so an app that talks HTTP only never loads (or installs) them.
import { createRequire } from 'node:module';
import { MESSAGES } from '../../dtm.messages.js';
import { DtmUsageError } from '../../errors/dtm-usage.error.js';

/** `@grpc/grpc-js`. */
export type GrpcJs = typeof import('@grpc/grpc-js');
/** `@grpc/proto-loader`. */
export type ProtoLoader = typeof import('@grpc/proto-loader');
/** protobufjs, as `@grpc/proto-loader` depends on it (the part the module uses). */
export interface Protobufjs {
  Root: { fromJSON(json: object): unknown };
}

let loaded: { grpc: GrpcJs; protoLoader: ProtoLoader; protobuf: Protobufjs } | undefined;

/**
 * The gRPC libraries (all CommonJS, so loaded synchronously): `@grpc/grpc-js`, `@grpc/proto-loader`
 * and the protobufjs it depends on (resolved from the loader, so the app installs nothing more);
 * a `DtmUsageError` saying what to install when they are missing.
 */
export function loadGrpc(): { grpc: GrpcJs; protoLoader: ProtoLoader; protobuf: Protobufjs } {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const load = <T>(name: string): T => {
    try {
      return require(name) as T;
    } catch (err) {
      throw new DtmUsageError(MESSAGES.grpcNotInstalled(name), { cause: err });
    }
  };
  const grpc = load<GrpcJs>('@grpc/grpc-js');
  const protoLoader = load<ProtoLoader>('@grpc/proto-loader');
  let protobuf: Protobufjs;
  try {
    protobuf = createRequire(require.resolve('@grpc/proto-loader'))('protobufjs') as Protobufjs;
  } catch (err) {
    throw new DtmUsageError(MESSAGES.grpcNotInstalled('protobufjs'), { cause: err });
  }
  loaded = { grpc, protoLoader, protobuf };
  return loaded;
}
