// How object payloads for gRPC branches become protobuf, and replies become objects: the request
// and response types of each method of the protos the app gives the module (`grpcProtos`), then of
// those its own gRPC servers load (as they load them).
import { MESSAGES } from '../../dtm.messages.js';
import { DtmConfigError } from '../../errors/dtm-config.error.js';
import { DtmUsageError } from '../../errors/dtm-usage.error.js';
import { loadGrpc } from './grpc-runtime.js';
import { messageOf } from '../../errors/text-of.js';

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
  requestType?: { type?: MessageDescriptorLike };
}

/** A message type's descriptor, as proto-loader gives it (its nested types and enums inside it). */
interface MessageDescriptorLike {
  name?: string;
  field?: FieldDescriptorLike[];
  oneofDecl?: { name?: string }[];
  nestedType?: MessageDescriptorLike[];
  enumType?: EnumDescriptorLike[];
  options?: { mapEntry?: boolean } | null;
}

/** An enum type's descriptor. */
interface EnumDescriptorLike {
  name?: string;
  value?: { name?: string; number?: number }[];
}

/** A field of a message type's descriptor, as proto-loader gives it (`typeName`: a message or enum type's name, relative to the field's message, as protobufjs spells it). */
interface FieldDescriptorLike {
  name?: string;
  type?: string;
  typeName?: string;
  label?: string;
}

/** What a value of one scalar field type must be so that protobuf sends it as it is (it coerces anything else without a word). */
interface ScalarRule {
  /** The type's name as a .proto spells it. */
  proto: string;
  /** What the field takes, for the message. */
  want: string;
  fits(value: unknown): boolean;
}

const DIGITS = /^-?\d+$/;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function wholeRule(proto: string, bits: 32 | 64, signed: boolean): ScalarRule {
  const min = signed ? -(BigInt(2) ** BigInt(bits - 1)) : BigInt(0);
  const max = (signed ? BigInt(2) ** BigInt(bits - 1) : BigInt(2) ** BigInt(bits)) - BigInt(1);
  const within = (n: bigint) => n >= min && n <= max;
  // the usual value, a number, compared as one: every safe integer fits a 64-bit type's range (but a negative one an unsigned type's)
  const [low, high] = bits === 64 ? [signed ? Number.MIN_SAFE_INTEGER : 0, Number.MAX_SAFE_INTEGER] : [Number(min), Number(max)];
  return {
    proto,
    want: bits === 64 ? 'a whole number within its range (a safe integer, a bigint or a string of decimal digits)' : 'a whole number within its range (a number or a string of decimal digits)',
    fits: (value) => {
      // a number past 2^53 has already lost digits; a fraction, or a string protobuf's parser reads another way (1e3, 0x10, 12.50), would be sent as another number
      if (typeof value === 'number') return Number.isSafeInteger(value) && value >= low && value <= high;
      if (typeof value === 'string') return DIGITS.test(value) && within(BigInt(value));
      if (typeof value === 'bigint') return bits === 64 && within(value);
      // a Long (what a decoded message holds with the loader's default longs)
      return bits === 64 && typeof value === 'object' && value !== null && typeof (value as { low?: unknown }).low === 'number' && typeof (value as { high?: unknown }).high === 'number';
    },
  };
}

/** The field types whose values the module checks, by their descriptor name. Messages and groups are left to protobuf (it refuses what is not an object). */
const SCALAR_RULES: Readonly<Record<string, ScalarRule>> = {
  TYPE_INT64: wholeRule('int64', 64, true),
  TYPE_SINT64: wholeRule('sint64', 64, true),
  TYPE_SFIXED64: wholeRule('sfixed64', 64, true),
  TYPE_UINT64: wholeRule('uint64', 64, false),
  TYPE_FIXED64: wholeRule('fixed64', 64, false),
  TYPE_INT32: wholeRule('int32', 32, true),
  TYPE_SINT32: wholeRule('sint32', 32, true),
  TYPE_SFIXED32: wholeRule('sfixed32', 32, true),
  TYPE_UINT32: wholeRule('uint32', 32, false),
  TYPE_FIXED32: wholeRule('fixed32', 32, false),
  TYPE_DOUBLE: { proto: 'double', want: 'a number (or a string of one)', fits: isNumberLike },
  TYPE_FLOAT: { proto: 'float', want: 'a number (or a string of one)', fits: isNumberLike },
  // protobuf sends any value's truthiness: "false" would be true
  TYPE_BOOL: { proto: 'bool', want: 'true or false', fits: (value) => typeof value === 'boolean' },
  // an object would be sent as "[object Object]", a list as its items joined by commas
  TYPE_STRING: { proto: 'string', want: 'a string or a number', fits: (value) => typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean' },
  // an object that is no byte array (a Buffer's JSON form) would be sent as no bytes
  TYPE_BYTES: {
    proto: 'bytes',
    want: 'bytes (a Uint8Array, a list of byte values or a base64 string)',
    fits: (value) => value instanceof Uint8Array || (typeof value === 'string' && BASE64.test(value) && value.length % 4 !== 1) || (Array.isArray(value) && value.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)),
  },
  TYPE_ENUM: { proto: 'enum', want: 'a value name or a whole number', fits: (value) => typeof value === 'string' || Number.isInteger(value) },
};

function isNumberLike(value: unknown): boolean {
  if (typeof value === 'number') return true;
  return typeof value === 'string' && value.trim() !== '' && (value === 'NaN' || !Number.isNaN(Number(value)));
}

/** The field of `fields` that `key` names once case and underscores are ignored (`user_id`, `UserId` for `userId`), if any. */
function sameNameAs(key: string, fields: readonly string[]): string | undefined {
  const bare = (name: string) => name.replace(/_/g, '').toLowerCase();
  return fields.find((field) => bare(field) === bare(key));
}

/** A value as the messages of the payload checks show it. */
function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'bigint') return `bigint ${value}n`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${value}`;
  return Array.isArray(value) ? 'a list' : value === null ? 'null' : `an ${typeof value}`;
}

/** A message or enum type of a package definition, with its full name. */
type ResolvedType = { fullName: string; message: MessageDescriptorLike; enumType?: undefined } | { fullName: string; enumType: EnumDescriptorLike; message?: undefined };

/**
 * Finds the types that message fields name in a proto-loader package definition: the top-level
 * types are its keys (full names), nested ones (and map entries) are inside their message's
 * descriptor, and a field names its type relative to its message, as protobuf resolves names.
 */
class ProtoTypes {
  constructor(private readonly definition: Record<string, unknown>) {}

  /** The type `name` (relative, or absolute with a leading dot) as seen from the message `scope` (a full name). */
  resolve(name: string, scope: string): ResolvedType | undefined {
    if (name.startsWith('.')) return this.find(name.slice(1));
    const parts = scope.split('.');
    for (let i = parts.length; i >= 0; i--) {
      const found = this.find([...parts.slice(0, i), name].join('.'));
      if (found) return found;
    }
    return undefined;
  }

  /**
   * The request type of the service method at `/<service>/<method>`, whose descriptor gives its
   * short name only: looked up from the service's scope, else the one top-level type of that name
   * with as many fields (another package's); undefined when that does not single it out.
   */
  request(methodPath: string, type: MessageDescriptorLike): ResolvedType | undefined {
    const name = type.name;
    if (name === undefined) return undefined;
    const alike = (found: ResolvedType | undefined) => found?.message?.field?.length === type.field?.length;
    const found = this.resolve(name, methodPath.split('/')[1] ?? '');
    if (alike(found)) return found;
    const others = Object.keys(this.definition).filter((key) => key.endsWith(`.${name}`) || key === name).map((key) => this.find(key)).filter(alike);
    return others.length === 1 ? others[0] : undefined;
  }

  private find(fullName: string): ResolvedType | undefined {
    const parts = fullName.split('.');
    for (let i = parts.length; i > 0; i--) {
      const entry = this.definition[parts.slice(0, i).join('.')] as { format?: unknown; type?: MessageDescriptorLike & EnumDescriptorLike } | undefined;
      if (typeof entry?.format !== 'string' || !entry.type) continue;
      if (entry.format.endsWith('EnumDescriptorProto')) return i === parts.length ? { fullName, enumType: entry.type } : undefined;
      let message: MessageDescriptorLike | undefined = entry.type;
      for (const [j, part] of parts.slice(i).entries()) {
        const last = i + j === parts.length - 1;
        const enumType = last ? message?.enumType?.find((e) => e.name === part) : undefined;
        if (enumType) return { fullName, enumType };
        message = message?.nestedType?.find((m) => m.name === part);
      }
      return message ? { fullName, message } : undefined;
    }
    return undefined;
  }
}

/** How many value names an enum field's refusal lists. */
const ENUM_NAMES_SHOWN = 12;

/** The check of one message type's object (its path in the payload given), built once per type. */
type MessageCheck = (value: object, path: string) => void;

/**
 * A check of an object payload against `method`'s request type, where protobuf would send
 * something else than the object says without a word: a key that is no field of the type (a
 * misspelt field, or the .proto's snake_case where the loader spells camelCase) is dropped, a
 * scalar field's value of another kind is coerced (2.5 or "12.50" in an int64 sent as 2 or 12,
 * "1e3" as 1, a string of digits past the range wrapped around, "false" in a bool sent as true, an
 * object in a string as "[object Object]"), and an enum name the enum does not have is sent as its
 * default value: the branch would run on other data. Every field, the items of lists and the values
 * of maps, down through nested messages (those of `google.protobuf` are left to protobuf, as are
 * the fields of a type the definition does not let the check find). Undefined when the definition
 * does not describe the type.
 */
function payloadCheck(method: MethodDefinitionLike, types: ProtoTypes): ((value: object) => void) | undefined {
  const type = method.requestType?.type;
  if (!Array.isArray(type?.field)) return undefined;
  const typeName = `the request type${type.name ? ` ${type.name}` : ''}`;
  const request = types.request(method.path, type);
  const checks = new Map<string, MessageCheck>();

  /** The check of message type `message` (full name `fullName`; unknown for the request type the definition did not let the check find, whose nested fields are then left to protobuf). */
  const messageCheck = (message: MessageDescriptorLike, fullName: string | undefined): MessageCheck => {
    const cached = fullName === undefined ? undefined : checks.get(fullName);
    if (cached) return cached;
    let built: MessageCheck | undefined;
    const check: MessageCheck = (value, path) => (built ??= buildCheck(message, fullName))(value, path);
    if (fullName !== undefined) checks.set(fullName, check);
    return check;
  };

  const buildCheck = (message: MessageDescriptorLike, fullName: string | undefined): MessageCheck => {
    const fields = (message.field ?? []).map((f) => f.name).filter((n): n is string => typeof n === 'string');
    // by name: how to check a field's value (a single value; lists are checked item by item), null for
    // a field protobuf checks itself and for a oneof's name (what a decoded message, loader option
    // oneofs, holds beside its set field: fromObject ignores it)
    const known = new Map<string, { check: (got: unknown, path: string, item?: number) => void; repeated: boolean } | null>((message.oneofDecl ?? []).map((o) => [o.name as string, null]));
    for (const field of message.field ?? []) {
      if (typeof field.name !== 'string') continue;
      known.set(field.name, fieldCheck(field, fullName));
    }
    const of = fullName === undefined || fullName === request?.fullName ? undefined : fullName;
    return (value, path) => {
      for (const key of Object.keys(value)) {
        const got = (value as Record<string, unknown>)[key];
        if (got === undefined) continue;
        const field = known.get(key);
        if (field === undefined) throw new Error(MESSAGES.grpcPayloadUnknownField(typeName, path + key, fields, of, sameNameAs(key, fields)));
        // null leaves the field unset, as undefined does
        if (field === null || got === null) continue;
        if (!field.repeated) field.check(got, path + key);
        else if (Array.isArray(got)) got.forEach((item, i) => field.check(item, path + key, i));
      }
    };
  };

  /** How one field's value is checked; null: left to protobuf. */
  const fieldCheck = (field: FieldDescriptorLike, scope: string | undefined): { check: (got: unknown, path: string, item?: number) => void; repeated: boolean } | null => {
    const repeated = field.label === 'LABEL_REPEATED';
    const rule = field.type === undefined || field.type === 'TYPE_ENUM' ? undefined : SCALAR_RULES[field.type];
    if (rule) return { repeated, check: (got, path, item) => rule.fits(got) || refuse(path, item, rule.proto, rule.want, got) };
    if (field.type !== 'TYPE_ENUM' && field.type !== 'TYPE_MESSAGE') return null;
    const resolved = scope === undefined || !field.typeName ? undefined : types.resolve(field.typeName, scope);
    if (field.type === 'TYPE_ENUM') {
      const values = resolved?.enumType?.value;
      if (!values) return { repeated, check: (got, path, item) => SCALAR_RULES.TYPE_ENUM.fits(got) || refuse(path, item, 'enum', SCALAR_RULES.TYPE_ENUM.want, got) };
      const names = new Set(values.map((v) => v.name));
      const shownNames = [...names].slice(0, ENUM_NAMES_SHOWN).join(', ') + (names.size > ENUM_NAMES_SHOWN ? ', …' : '');
      // proto3 enums are open: a number the enum does not name is sent as it is
      return { repeated, check: (got, path, item) => Number.isInteger(got) || (typeof got === 'string' && names.has(got)) || refuse(path, item, `enum ${resolved!.fullName}`, `one of ${shownNames} (or a whole number)`, got) };
    }
    const nested = resolved?.message;
    if (!nested || resolved!.fullName.startsWith('google.protobuf.')) return null;
    if (nested.options?.mapEntry) {
      // a map: an object whose values are checked as the entry's value field (its keys are strings in JavaScript either way)
      const valueField = nested.field?.find((f) => f.name === 'value');
      const value = valueField ? fieldCheck({ ...valueField, label: 'LABEL_OPTIONAL' }, resolved!.fullName) : null;
      if (!value) return null;
      return {
        repeated: false,
        check: (got, path) => {
          if (typeof got !== 'object' || Array.isArray(got) || got instanceof Uint8Array) return;
          for (const key of Object.keys(got as object)) {
            const item = (got as Record<string, unknown>)[key];
            if (item !== undefined && item !== null) value.check(item, `${path}.${key}`);
          }
        },
      };
    }
    const check = messageCheck(nested, resolved!.fullName);
    // anything but an object is refused by protobuf itself
    return { repeated, check: (got, path, item) => typeof got === 'object' && !Array.isArray(got) && !(got instanceof Uint8Array) && check(got as object, `${path}${item === undefined ? '' : `[${item}]`}.`) };
  };

  const refuse = (path: string, item: number | undefined, proto: string, want: string, got: unknown): never => {
    throw new Error(MESSAGES.grpcPayloadFieldValue(typeName, path, item === undefined ? proto : `${proto}, item ${item}`, want, shown(got)));
  };

  const top = messageCheck(type, request?.fullName);
  return (value) => top(value, '');
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
      throw new DtmConfigError([{ path: 'grpcProtos.protoPath', message: MESSAGES.grpcProtosUnreadable(messageOf(err)) }], 'module options');
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
    const types = new ProtoTypes(definition);
    for (const service of Object.values(definition)) {
      if (!service || typeof service !== 'object' || 'format' in service) continue; // a message or enum type, not a service
      for (const method of Object.values(service as Record<string, MethodDefinitionLike>)) {
        if (typeof method?.path !== 'string' || this.byPath.has(method.path)) continue;
        const check = payloadCheck(method, types);
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
