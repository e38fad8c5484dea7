// How object payloads for gRPC branches become protobuf, and replies become objects: the request
// and response types of each method of the protos the app gives the module (`grpcProtos`), then of
// those its own gRPC servers load (as they load them).
import { MESSAGES } from '../../dtm.messages.js';
import { DtmConfigError } from '../../errors/dtm-config.error.js';
import { DtmUsageError } from '../../errors/dtm-usage.error.js';
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
  /** The request type: its descriptor, whose field names are spelt as the loader options say (keepCase). */
  requestType?: { type?: { name?: string; field?: { name?: string }[]; oneofDecl?: { name?: string }[] } };
}

/**
 * A check of an object payload's keys against `method`'s request type: protobuf drops a key that
 * is no field of it without a word (a misspelt field, or the .proto's snake_case where the loader
 * spells camelCase), and the branch would run with that field missing. Undefined when the
 * definition does not describe the type.
 */
function unknownKeyCheck(method: MethodDefinitionLike): ((value: object) => void) | undefined {
  const type = method.requestType?.type;
  if (!Array.isArray(type?.field)) return undefined;
  const fields = type.field.map((f) => f.name).filter((n): n is string => typeof n === 'string');
  // a oneof's name is what a decoded message (loader option oneofs) holds beside its set field: fromObject ignores it
  const known = new Set([...fields, ...(type.oneofDecl ?? []).map((o) => o.name)]);
  const typeName = `the request type${type.name ? ` ${type.name}` : ''}`;
  return (value) => {
    for (const key of Object.keys(value)) {
      if (!known.has(key) && (value as Record<string, unknown>)[key] !== undefined) throw new Error(MESSAGES.grpcPayloadUnknownField(typeName, key, fields));
    }
  };
}

/**
 * Codecs by method path (`/package.Service/Method`), from the app's protos (`grpcProtos`), then
 * from the protos of the app's own gRPC servers (see {@link useServerProtos}).
 */
export class GrpcCodecs {
  private readonly byPath = new Map<string, GrpcMethodCodec>();
  /** The package definitions of the app's gRPC servers, when the module knows its servers. */
  private serverDefinitions?: () => readonly Record<string, unknown>[];
  /** The server definitions already read into {@link byPath}. */
  private readonly indexed = new WeakSet<object>();

  /** Loads `protos` (at start-up: a missing file or a syntax error fails the app's start with a `DtmConfigError`). */
  static load(protos: GrpcProtos | undefined): GrpcCodecs {
    const codecs = new GrpcCodecs();
    if (!protos) return codecs;
    let protoLoader: ReturnType<typeof loadGrpc>['protoLoader'];
    try {
      ({ protoLoader } = loadGrpc());
    } catch (err) {
      // the optional peers are missing: a start-up problem at the option, saying what to install
      if (!(err instanceof DtmUsageError)) throw err;
      throw new DtmConfigError([{ path: 'grpcProtos', message: err.message }], 'module options');
    }
    let definition: Record<string, unknown>;
    try {
      definition = protoLoader.loadSync(protos.protoPath, { longs: String, ...protos.loader } as Parameters<typeof protoLoader.loadSync>[1]);
    } catch (err) {
      throw new DtmConfigError([{ path: 'grpcProtos.protoPath', message: MESSAGES.grpcProtosUnreadable(err instanceof Error ? err.message : String(err)) }], 'module options');
    }
    codecs.index(definition);
    return codecs;
  }

  /**
   * Lets a method `grpcProtos` does not declare be found in `definitions()`: the package
   * definitions of the app's own gRPC servers, loaded as each server loads its protos (its
   * `loader` options, so an object payload is spelled as its handlers receive it).
   */
  useServerProtos(definitions: () => readonly Record<string, unknown>[]): void {
    this.serverDefinitions = definitions;
  }

  /** The codecs of `/package.Service/Method`, if `grpcProtos` or one of the app's gRPC servers' protos declares it. */
  get(methodPath: string): GrpcMethodCodec | undefined {
    const codec = this.byPath.get(methodPath);
    if (codec !== undefined || this.serverDefinitions === undefined) return codec;
    for (const definition of this.serverDefinitions()) {
      if (this.indexed.has(definition)) continue;
      this.indexed.add(definition);
      this.index(definition);
    }
    return this.byPath.get(methodPath);
  }

  /** Adds the methods of the services of `definition` (a proto-loader package definition) that are not known yet: `grpcProtos` wins. */
  private index(definition: Record<string, unknown>): void {
    for (const service of Object.values(definition)) {
      if (!service || typeof service !== 'object' || 'format' in service) continue; // a message or enum type, not a service
      for (const method of Object.values(service as Record<string, MethodDefinitionLike>)) {
        if (typeof method?.path !== 'string' || this.byPath.has(method.path)) continue;
        const check = unknownKeyCheck(method);
        this.byPath.set(method.path, {
          serializeRequest: (value) => {
            check?.(value);
            return method.requestSerialize(value);
          },
          deserializeResponse: (bytes) => method.responseDeserialize(bytes),
        });
      }
    }
  }
}
