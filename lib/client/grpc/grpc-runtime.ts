// The gRPC libraries, loaded on first use: @grpc/grpc-js and @grpc/proto-loader are optional peer
// dependencies, so an app that talks HTTP only never loads (or installs) them.
import { createRequire } from 'node:module';
import { MESSAGES } from '../../dtm.messages.js';
import { DtmUsageError } from '../../errors/dtm-usage.error.js';

/** `@grpc/grpc-js`. */
export type GrpcJs = typeof import('@grpc/grpc-js');
/** `@grpc/proto-loader`. */
export type ProtoLoader = typeof import('@grpc/proto-loader');

let loaded: { grpc: GrpcJs; protoLoader: ProtoLoader } | undefined;

/** The gRPC libraries (both CommonJS, so loaded synchronously); a `DtmUsageError` saying what to install when they are missing. */
export function loadGrpc(): { grpc: GrpcJs; protoLoader: ProtoLoader } {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const load = <T>(name: string): T => {
    try {
      return require(name) as T;
    } catch (err) {
      throw new DtmUsageError(MESSAGES.grpcNotInstalled(name), { cause: err });
    }
  };
  loaded = { grpc: load<GrpcJs>('@grpc/grpc-js'), protoLoader: load<ProtoLoader>('@grpc/proto-loader') };
  return loaded;
}
