// How object payloads for gRPC branches become protobuf, and replies become objects: the request
// and response types of each method of the protos the app gives the module (`grpcProtos`).
import { MESSAGES } from '../../dtm.messages.js';
import { DtmConfigError } from '../../errors/dtm-config.error.js';
import { loadGrpc } from './grpc-runtime.js';

/** The protos the module encodes gRPC payloads with (module option `grpcProtos`). */
export interface GrpcProtos {
  /** `.proto` file(s) declaring the services your gRPC branches implement (the ones your Nest gRPC server loads). */
  protoPath: string | string[];
  /**
   * `@grpc/proto-loader` options, as in Nest's `GrpcOptions.loader` (use the same, so that both
   * sides spell fields alike). Default: the loader's own defaults, with `longs: String`.
   */
  loader?: { keepCase?: boolean; longs?: unknown; enums?: unknown; defaults?: boolean; arrays?: boolean; objects?: boolean; oneofs?: boolean; includeDirs?: string[] };
}

/** One method's message codecs. */
export interface GrpcMethodCodec {
  serializeRequest(value: object): Buffer;
  deserializeResponse(bytes: Buffer): unknown;
}

interface MethodDefinitionLike {
  path: string;
  requestSerialize(value: unknown): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
}

/** Codecs by method path (`/package.Service/Method`), from the app's protos; empty when it gave none. */
export class GrpcCodecs {
  private readonly byPath = new Map<string, GrpcMethodCodec>();

  /** Loads `protos` (at start-up: a missing file or a syntax error fails the app's start with a `DtmConfigError`). */
  static load(protos: GrpcProtos | undefined): GrpcCodecs {
    const codecs = new GrpcCodecs();
    if (!protos) return codecs;
    const { protoLoader } = loadGrpc();
    let definition: Record<string, unknown>;
    try {
      definition = protoLoader.loadSync(protos.protoPath, { longs: String, ...protos.loader } as Parameters<typeof protoLoader.loadSync>[1]);
    } catch (err) {
      throw new DtmConfigError([{ path: 'grpcProtos.protoPath', message: MESSAGES.grpcProtosUnreadable(err instanceof Error ? err.message : String(err)) }], 'module options');
    }
    for (const service of Object.values(definition)) {
      if (!service || typeof service !== 'object' || 'format' in service) continue; // a message or enum type, not a service
      for (const method of Object.values(service as Record<string, MethodDefinitionLike>)) {
        if (typeof method?.path !== 'string') continue;
        codecs.byPath.set(method.path, {
          serializeRequest: (value) => method.requestSerialize(value),
          deserializeResponse: (bytes) => method.responseDeserialize(bytes),
        });
      }
    }
    return codecs;
  }

  /** The codecs of `/package.Service/Method`, if the app's protos declare it. */
  get(methodPath: string): GrpcMethodCodec | undefined {
    return this.byPath.get(methodPath);
  }
}
