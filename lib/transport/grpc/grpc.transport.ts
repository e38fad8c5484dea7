import type { Client, Metadata, ServiceError } from '@grpc/grpc-js';
import type { DtmConfig } from '../../config/dtm-config.types.js';
import { isCredentialHeader } from '../../config/dtm-config.keys.js';
import { MESSAGES, UNANSWERED, type UnansweredMessages } from '../../dtm.messages.js';
import type { DtmErrorContext } from '../../errors/dtm-error.js';
import { DtmFailureError } from '../../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../../errors/dtm-ongoing.error.js';
import { DtmServerError } from '../../errors/dtm-server.error.js';
import { definiteServerRefusal } from '../dtm-refusal.js';
import { markBranchStatus } from '../dtm-transient.js';
import { DtmUnavailableError } from '../../errors/dtm-unavailable.error.js';
import { DtmUsageError } from '../../errors/dtm-usage.error.js';
import type { BranchTarget } from '../branch-target.js';
import type { BranchAnswer, ListFilter, ListPage, Payload, PingResult, TransactionRecord } from '../dtm.types.js';
import {
  isDtmGid,
  type BranchRegistration,
  type DirectBranchCall,
  type DtmTransport,
  type EncodedPayload,
  type ResolvedOptions,
  type TransactionRequest,
  type WorkflowProgress,
} from '../dtm-transport.js';
import { redactText, shorten } from '../../redact.js';
import { answersAndStore, type HttpTransport } from '../http/http.transport.js';
import { payloadText } from '../payload.js';
import { DTM_GRPC_DESCRIPTOR } from './dtm-grpc.proto.js';
import type { GrpcCodecs } from './grpc-codecs.js';
import { loadGrpc, type GrpcJs } from './grpc-runtime.js';
import { fromGrpcProgress, toGrpcRegistration, toGrpcRequest, type GrpcDtmProgressesReply } from './grpc-wire.js';
import { messageOf } from '../../errors/text-of.js';

/** gRPC status codes DTM's protocol gives a meaning (grpc-js `status`). */
const ABORTED = 10;
const FAILED_PRECONDITION = 9;
const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;
const RESOURCE_EXHAUSTED = 8;
const UNIMPLEMENTED = 12;
/**
 * What the gRPC ping calls: a method DTM's service does not have. grpc-go answers it UNIMPLEMENTED
 * before any interceptor or handler of DTM runs (no log line, no gid made, nothing stored).
 */
const PING_METHOD = '/dtmgimp.Dtm/NestjsDtmPing';
/**
 * How grpc-go words that UNIMPLEMENTED on a server that registered DTM's service `dtmgimp.Dtm` (any
 * other gRPC server answers UNIMPLEMENTED too, but "unknown service dtmgimp.Dtm", or grpc-js's
 * "does not implement the method"): what tells DTM from another service at `grpc_server`.
 */
const PING_ANSWER = /^unknown method NestjsDtmPing for service dtmgimp\.Dtm$/;
/**
 * Longest wait between two connection attempts of a channel whose server did not answer. grpc-js
 * doubles it (x1.6) after each failed attempt up to 120 s by default, and fails every call at once
 * while it waits: after an outage of a minute DTM (or a branch) back up stayed unreachable for 20 s
 * more, after a longer one up to 2 minutes. An attempt is one TCP connection.
 */
const MAX_RECONNECT_BACKOFF_MS = 1000;
/**
 * Longest {@link GrpcTransport.connected} waits for the channel to DTM to leave its reconnect
 * backoff: the longest backoff with grpc-js's jitter (+20 %) and the connection of the attempt
 * that ends it.
 */
const RECONNECT_WAIT_MS = 2 * MAX_RECONNECT_BACKOFF_MS;
/**
 * How often the channels to branch servers are swept: one with no call under way and none since
 * the last sweep (idle for 5 to 10 minutes) is closed, and made again by the next call to its
 * server. Branch servers named by other services' targets change with their deploys (pod IPs):
 * without it each address kept a channel for the life of the process.
 */
const BRANCH_CHANNEL_SWEEP_MS = 5 * 60_000;
/**
 * How grpc-js says a message was over `grpc.max_receive_message_length` (it stops reading at the
 * message's length prefix), with the message's size and the limit: this client's of an answer, or
 * a grpc-js server's of this client's request (which it answers with these words).
 */
const TOO_LARGE = /^Received message larger than max \((\d+) vs\.? (\d+)\)/;
/** How grpc-go (DTM's server) and grpc-js word a message over their size limit: refused before any handler read it. */
const OVER_SIZE_LIMIT = /received message larger than max/i;

/** grpc-go's words (DTM's gRPC server) for a request over its size limit: the request's size and the limit. */
const DTM_TOO_LARGE = /received message larger than max \((\d+) vs\.? (\d+)\)/;

/** The methods of DTM's gRPC API (`dtmgimp.Dtm`) the module calls. */
type DtmMethod = 'NewGid' | 'Submit' | 'Prepare' | 'Abort' | 'RegisterBranch' | 'PrepareWorkflow';

/** How one of them travels: its path, and its request and reply codecs. */
interface DtmMethodCodec {
  path: string;
  serialize(value: object): Buffer;
  deserialize(bytes: Buffer): unknown;
}

/**
 * A grpc-js channel and the calls under way on it: grpc-js's `close()` cancels the calls still
 * waiting for a connection ("Channel closed before call started"), so a channel is closed only
 * once no call is under way on it.
 */
interface Channel {
  readonly client: Client;
  /** Calls started on it and not yet answered. */
  calls: number;
  /** Closed when {@link calls} is next 0 (or now, if it is). */
  retired: boolean;
  /** Whether a call started on it since the last sweep of idle branch channels. */
  used: boolean;
}

/** A protobufjs message type (the little of it used here). */
interface MessageType {
  encode(value: object): { finish(): Uint8Array };
  decode(bytes: Uint8Array): unknown;
}

const EMPTY = Buffer.alloc(0);
/** What gRPC metadata carries: keys of `[0-9a-z._-]`, values of printable ASCII. */
const METADATA_KEY = /^[0-9a-z._-]+$/;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const identity = (bytes: Buffer): Buffer => bytes;
/** `google.protobuf.Empty` as an object (a reply must not be null: grpc-js would take it for a missing one). */
const EMPTY_MESSAGE = Object.freeze({});

/** False where `Error` is frozen (`--frozen-intrinsics`, a locked-down realm): the calls then keep their stack. */
const STACK_LIMIT_WRITABLE = Object.getOwnPropertyDescriptor(Error, 'stackTraceLimit')?.writable === true;

/**
 * Runs `start` (the start of one grpc-js call) without the stack trace grpc-js records for every
 * call: one `new Error()` per call, kept only to append the caller's stack to the ServiceError of a
 * failed call. The module never shows that error (it answers with its own, whose causes are plain
 * Errors), and capturing it was the dearest part of a call on the caller's side (10 frames deep
 * from a saga's submit). Only grpc-js's synchronous start of the call and the request's serializer
 * run meanwhile; `Error.stackTraceLimit` is back to its value before this returns or throws.
 */
function withoutCallerStack(start: () => void): void {
  if (!STACK_LIMIT_WRITABLE) return start();
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    start();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/**
 * The codecs of DTM's methods: requests are encoded straight from the plain objects of
 * grpc-wire.ts (proto-loader's serializers first copy them with `fromObject`, int64 fields into
 * `Long`s, for the same bytes), NewGid's reply is decoded without a `toObject` copy, and Empty
 * replies are not read at all.
 */
function dtmMethodCodecs(): Record<DtmMethod, DtmMethodCodec> {
  const root = loadGrpc().protobuf.Root.fromJSON(DTM_GRPC_DESCRIPTOR) as unknown as { lookupType(name: string): MessageType };
  const encoder = (type: MessageType) => (value: object): Buffer => {
    const bytes = type.encode(value).finish();
    return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
  const request = encoder(root.lookupType('dtmgimp.DtmRequest'));
  const gidReply = root.lookupType('dtmgimp.DtmGidReply');
  const empty = () => EMPTY_MESSAGE;
  const method = (name: DtmMethod, serialize: (value: object) => Buffer, deserialize: (bytes: Buffer) => unknown) => ({ path: `/dtmgimp.Dtm/${name}`, serialize, deserialize });
  return {
    NewGid: method('NewGid', () => EMPTY, (bytes) => gidReply.decode(bytes)),
    Submit: method('Submit', request, empty),
    Prepare: method('Prepare', request, empty),
    Abort: method('Abort', request, empty),
    RegisterBranch: method('RegisterBranch', encoder(root.lookupType('dtmgimp.DtmBranchRequest')), empty),
    PrepareWorkflow: method('PrepareWorkflow', request, (bytes) => root.lookupType('dtmgimp.DtmProgressesReply').decode(bytes)),
  };
}

/**
 * DTM's gRPC API (`lynx.dtm.grpc_server`) and gRPC branches (`host:port/package.Service/Method`,
 * called with raw bytes and DTM's `dtm-*` metadata, as DTM's Go SDK calls them). DTM's query, list
 * and forceStop exist only over HTTP, and an `http://` step of a gRPC transaction is an HTTP
 * branch: those go through the HTTP transport (`lynx.dtm.server_url`).
 *
 * Every call is bounded: a deadline (`timeout`; the branch timeout for a branch) for the whole
 * call, answers over `max_answer_bytes` refused from their length prefix, and channels that
 * ignore `grpc_proxy` / `https_proxy` / `http_proxy` (`grpc.enable_http_proxy: 0`).
 */
export class GrpcTransport implements DtmTransport {
  readonly protocol = 'grpc' as const;
  private readonly grpc: GrpcJs;
  private readonly methods: Record<DtmMethod, DtmMethodCodec>;
  private dtmClient?: Channel;
  private readonly branchClients = new Map<string, Channel>();
  /** The sweep of idle branch channels ({@link BRANCH_CHANNEL_SWEEP_MS}), while any is kept. */
  private sweeper?: ReturnType<typeof setInterval>;
  /** Set by {@link close}: a call made after it (a transaction the app still runs) gets a channel of its own, closed when the call ends. */
  private closed = false;
  /** Options of every channel: no proxy from the environment, answers up to `max_answer_bytes`, reconnects within {@link MAX_RECONNECT_BACKOFF_MS}. */
  private readonly channelOptions: Record<string, number>;

  constructor(
    private readonly config: DtmConfig,
    private readonly http: HttpTransport,
    private readonly codecs: GrpcCodecs,
  ) {
    this.grpc = loadGrpc().grpc;
    this.methods = dtmMethodCodecs();
    this.channelOptions = { 'grpc.enable_http_proxy': 0, 'grpc.max_receive_message_length': config.maxAnswerBytes, 'grpc.max_reconnect_backoff_ms': MAX_RECONNECT_BACKOFF_MS };
  }

  encode(payload: Payload, target: BranchTarget): EncodedPayload {
    if (target.kind !== 'grpc') {
      // HTTP steps get the JSON text as their body; topic and empty steps take bytes as they are
      if (payload instanceof Uint8Array && target.kind !== 'http') return payload;
      return Buffer.from(payloadText(payload), 'utf8');
    }
    if (payload instanceof Uint8Array) return payload;
    if (payload === undefined) return EMPTY;
    if (typeof payload === 'object' && payload !== null && !Array.isArray(payload)) {
      const codec = this.codecs.get(target.method);
      if (!codec) throw new DtmUsageError(MESSAGES.grpcPayloadNeedsProto(target.value));
      try {
        return codec.serializeRequest(payload);
      } catch (err) {
        throw new DtmUsageError(MESSAGES.grpcPayloadNotEncodable(target.value, messageOf(err)), { cause: err });
      }
    }
    throw new DtmUsageError(MESSAGES.grpcPayloadType(target.value, payload === null ? 'null' : typeof payload));
  }

  checkTarget(_target: BranchTarget, _gid: string): void {
    // DTM calls http(s):// steps of a gRPC transaction over HTTP, and every other target over gRPC
  }

  /**
   * DTM sends the gid and the branch headers as gRPC metadata to every gRPC branch; grpc-go fails
   * such a call inside DTM (retried forever) for a value that is not printable ASCII or a key
   * outside `[0-9a-z._-]`, and a value with spaces around it never reaches the branch (HTTP/2
   * forbids them): refused here, before anything is sent.
   */
  checkTransaction(gid: string, options: ResolvedOptions): void {
    if (!PRINTABLE_ASCII.test(gid)) throw new DtmUsageError(MESSAGES.grpcMetadataValue('the gid', gid), { gid });
    for (const name in options.branchHeaders) {
      if (!METADATA_KEY.test(name) || name.startsWith('grpc-')) throw new DtmUsageError(MESSAGES.grpcMetadataKey(name), { gid });
      const value = options.branchHeaders[name];
      // the value of a header that looks like a credential (authorization, x-api-key, ...) is not shown
      if (!PRINTABLE_ASCII.test(value)) throw new DtmUsageError(MESSAGES.grpcMetadataValue(`branch header ${name}`, isCredentialHeader(name) ? undefined : value), { gid });
      if (value !== value.trim()) throw new DtmUsageError(MESSAGES.grpcMetadataSpaces(name, isCredentialHeader(name) ? undefined : value), { gid });
    }
  }

  /** A gid from DTM, checked: a reply whose `Gid` is not 1 to 128 safe characters gives `DtmServerError`. */
  async newGid(): Promise<string> {
    const gid = ((await this.dtm('NewGid', EMPTY_MESSAGE, 'newGid')) as { Gid?: unknown }).Gid;
    if (!isDtmGid(gid)) {
      const endpoint = `${this.config.grpcServer}${this.methods.NewGid.path}`;
      const got = typeof gid === 'string' && gid !== '' ? JSON.stringify(shorten(redactText(gid))) : 'an empty gid';
      throw new DtmServerError(MESSAGES.badGidFromDtm(endpoint, got), String(gid ?? ''), { endpoint, protocol: 'grpc', status: 0 });
    }
    return gid;
  }

  async prepare(request: TransactionRequest): Promise<void> {
    await this.dtm('Prepare', toGrpcRequest(request), 'prepare', request.gid);
  }

  /**
   * With waitResult, DTM answers a gRPC branch's error of its first round with the branch's own
   * code (after storing the transaction `submitted`): any code but DTM's FAILURE / ONGOING is then
   * marked as one DTM may have acted on ({@link markBranchStatus}), save grpc-go's refusal of a
   * request over its size limit (nothing of it reached DTM's handler).
   */
  async submit(request: TransactionRequest): Promise<void> {
    try {
      await this.dtm('Submit', toGrpcRequest(request), 'submit', request.gid);
    } catch (err) {
      if (request.options.waitResult && err instanceof DtmServerError && !OVER_SIZE_LIMIT.test(err.body)) markBranchStatus(err);
      throw err;
    }
  }

  async abort(request: TransactionRequest): Promise<void> {
    await this.dtm('Abort', toGrpcRequest(request), 'abort', request.gid);
  }

  async prepareWorkflow(request: TransactionRequest): Promise<WorkflowProgress> {
    return fromGrpcProgress((await this.dtm('PrepareWorkflow', toGrpcRequest(request), 'prepareWorkflow', request.gid)) as GrpcDtmProgressesReply);
  }

  async registerBranch(registration: BranchRegistration): Promise<void> {
    await this.dtm('RegisterBranch', toGrpcRegistration(registration), 'registerBranch', registration.gid, registration.branchId);
  }

  query(gid: string, timeoutSeconds?: number): Promise<TransactionRecord | null> {
    return this.http.query(gid, timeoutSeconds);
  }

  list(filter: ListFilter, timeoutSeconds?: number): Promise<ListPage> {
    return this.http.list(filter, timeoutSeconds);
  }

  forceStop(gid: string): Promise<void> {
    return this.http.forceStop(gid);
  }

  /**
   * DTM's gRPC server answers UNIMPLEMENTED to a method it does not have ({@link PING_METHOD}): a
   * round trip that runs nothing on it. The version, and DTM's store (a query that finds nothing),
   * are read over HTTP at the same time: each call is bounded by `timeout`, so the ping is too (one
   * after the other they took up to twice that).
   */
  async ping(): Promise<PingResult> {
    const started = Date.now();
    const [latencyMs, version] = await answersAndStore(Promise.all([this.unimplemented().then(() => Date.now() - started), this.http.version()]), this.http.readStore());
    return { version, protocol: 'grpc', latencyMs };
  }

  /**
   * Resolves once the channel to DTM is connected (within `withinMs`, {@link RECONNECT_WAIT_MS} at
   * most), at once unless it is in TRANSIENT_FAILURE: grpc-js then fails every call at once, without
   * sending it, until an attempt of its reconnect (one every {@link MAX_RECONNECT_BACKOFF_MS} or so)
   * connects. What a wait's submit again runs first: DTM back (its HTTP API answering) while this
   * channel still backs off, the submit would fail and the next be sent seconds later.
   */
  connected(withinMs: number): Promise<void> {
    const client = this.dtmClient?.client;
    if (!client || client.getChannel().getConnectivityState(false) !== this.grpc.connectivityState.TRANSIENT_FAILURE) return Promise.resolve();
    // grpc-js's error (the deadline passed, the channel closed) is not one: the call sent next says what it meets
    return new Promise((resolve) => client.waitForReady(Date.now() + Math.min(withinMs, RECONNECT_WAIT_MS), () => resolve()));
  }

  /**
   * Calls a branch as DTM's Go SDK does: a gRPC branch with the payload's bytes and `dtm-gid`,
   * `dtm-trans_type`, `dtm-branch_id`, `dtm-op`, `dtm-dtm` (this module's DTM gRPC address), and
   * for an XA action `dtm-phase2_url`, plus the branch headers as metadata (a `-bin` one as the bytes
   * of its text, binary metadata as grpc-go sends it for DTM); OK → the reply, ABORTED
   * → {@link DtmFailureError}, FAILED_PRECONDITION → {@link DtmOngoingError}; an OK reply that does
   * not decode as the method's reply type (of `grpcProtos` or the app's servers' protos) →
   * {@link DtmServerError}, as an answer too large to read. An `http://` branch goes over HTTP.
   */
  callBranch(call: DirectBranchCall): Promise<BranchAnswer> {
    const { target } = call;
    if (target.kind === 'http') return this.http.callBranch(call);
    if (target.kind !== 'grpc') throw new DtmUsageError(MESSAGES.notCallable(target.value), { gid: call.gid, branchId: call.branchId });
    const metadata = this.metadata(call);
    const channel = this.branchClient(target.server);
    const context: DtmErrorContext = { gid: call.gid, branchId: call.branchId, endpoint: target.value, protocol: 'grpc' };
    return new Promise((resolve, reject) => {
      withoutCallerStack(() =>
        this.started(channel).makeUnaryRequest(
          target.method,
          identity,
          identity,
          Buffer.isBuffer(call.payload) ? call.payload : call.payload ? Buffer.from(call.payload as Uint8Array) : EMPTY,
          metadata,
          { deadline: Date.now() + call.timeoutSeconds * 1000 },
          (err, reply) => {
            ended(channel);
            if (err) return reject(branchError(err, context, call.timeoutSeconds, this.config.maxAnswerBytes));
            const raw = reply ?? EMPTY;
            const codec = this.codecs.get(target.method);
            if (!codec) return resolve({ body: raw, raw });
            // inside grpc-js's callback: a throw here would be an uncaught exception, and the call would never settle
            try {
              resolve({ body: codec.deserializeResponse(raw), raw });
            } catch (decodeError) {
              const reason = messageOf(decodeError);
              reject(new DtmServerError(MESSAGES.branchReplyNotDecodable(target.value, raw.length, reason), reason, { ...context, status: 0, cause: decodeError }));
            }
          },
        ),
      );
    });
  }

  /**
   * Closes every gRPC channel, each once the calls under way on it are answered (grpc-js's close
   * would cancel those still waiting for a connection), and a call made after this gets a channel
   * of its own, closed when it ends.
   */
  close(): void {
    this.closed = true;
    if (this.dtmClient) retire(this.dtmClient);
    this.dtmClient = undefined;
    for (const channel of this.branchClients.values()) retire(channel);
    this.branchClients.clear();
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Counts a call started on `channel`; {@link ended} ends it. */
  private started(channel: Channel): Client {
    channel.calls++;
    channel.used = true;
    return channel.client;
  }

  private metadata(call: DirectBranchCall): Metadata {
    const metadata = new this.grpc.Metadata();
    try {
      metadata.set('dtm-gid', call.gid);
      metadata.set('dtm-trans_type', call.transType);
      metadata.set('dtm-branch_id', call.branchId);
      metadata.set('dtm-op', call.op);
      metadata.set('dtm-dtm', this.config.grpcServer);
      if (call.phase2Target !== undefined) metadata.set('dtm-phase2_url', call.phase2Target);
      // a `-bin` name is binary metadata: its value travels as the bytes of the text, as grpc-go sends it for DTM and its Go SDK
      for (const name in call.headers) metadata.set(name, name.endsWith('-bin') ? Buffer.from(call.headers[name], 'utf8') : call.headers[name]);
    } catch (err) {
      throw new DtmUsageError(MESSAGES.grpcMetadataInvalid(messageOf(err)), { gid: call.gid, branchId: call.branchId, cause: err });
    }
    return metadata;
  }

  /** The channel to the branch server `server`: the kept one, or after {@link close} one for the call alone. */
  private branchClient(server: string): Channel {
    let channel = this.branchClients.get(server);
    if (!channel) {
      channel = this.channel(server);
      if (!this.closed) {
        this.branchClients.set(server, channel);
        this.sweeper ??= setInterval(() => this.sweepBranchChannels(), BRANCH_CHANNEL_SWEEP_MS).unref();
      }
    }
    return channel;
  }

  /** Closes the branch channels with no call under way and none since the last sweep. */
  private sweepBranchChannels(): void {
    for (const [server, channel] of this.branchClients) {
      if (channel.calls > 0 || channel.used) {
        channel.used = false;
        continue;
      }
      this.branchClients.delete(server);
      retire(channel);
    }
  }

  /** The channel to DTM's gRPC API (`grpc_server`): the kept one, or after {@link close} one for the call alone. */
  private dtmChannel(): Channel {
    if (this.closed) return this.channel(this.config.grpcServer);
    return (this.dtmClient ??= this.channel(this.config.grpcServer));
  }

  /** A new channel to `address`, with {@link channelOptions}; after {@link close}, retired: closed when its call ends. */
  private channel(address: string): Channel {
    return { client: new this.grpc.Client(address, this.grpc.credentials.createInsecure(), this.channelOptions), calls: 0, retired: this.closed, used: false };
  }

  /**
   * Calls {@link PING_METHOD}; resolves when DTM answers (UNIMPLEMENTED as {@link PING_ANSWER}), rejects
   * as {@link dtm} does when nothing answers, and with {@link DtmServerError} when another gRPC server does.
   */
  private unimplemented(): Promise<void> {
    const address = this.config.grpcServer;
    const channel = this.dtmChannel();
    const timeout = this.config.timeout;
    const endpoint = `${address}${PING_METHOD}`;
    return new Promise((resolve, reject) =>
      this.started(channel).makeUnaryRequest(PING_METHOD, () => EMPTY, identity, EMPTY_MESSAGE, { deadline: Date.now() + timeout * 1000 }, (err: ServiceError | null) => {
        ended(channel);
        if (err?.code === UNIMPLEMENTED && PING_ANSWER.test(err.details ?? '')) return resolve();
        // a gRPC server that is not DTM's (another service's, a catch-all): it answered, but DTM is not there
        if (!err || err.code === UNIMPLEMENTED) {
          const answer = err ? `UNIMPLEMENTED ${JSON.stringify(err.details ?? '')}` : 'OK';
          return reject(new DtmServerError(MESSAGES.grpcServerNotDtm(address, answer), answer, { endpoint, protocol: 'grpc', status: err?.code ?? 0 }));
        }
        reject(dtmError(err, { endpoint, protocol: 'grpc', status: err.code }, 'ping', timeout, this.config.maxAnswerBytes));
      }),
    );
  }

  /**
   * One call of DTM's gRPC API at `grpc_server` (the only DTM server it calls), within `timeout`, on a plain
   * grpc-js client with the codecs of {@link dtmMethodCodecs}.
   */
  private dtm(method: DtmMethod, request: object, operation: string, gid?: string, branchId?: string): Promise<unknown> {
    const address = this.config.grpcServer;
    const channel = this.dtmChannel();
    const { path, serialize, deserialize } = this.methods[method];
    const timeout = this.config.timeout;
    return new Promise((resolve, reject) =>
      withoutCallerStack(() =>
        this.started(channel).makeUnaryRequest(path, serialize, deserialize, request, { deadline: Date.now() + timeout * 1000 }, (err: ServiceError | null, value?: unknown) => {
          ended(channel);
          if (!err) return resolve(value);
          const context: DtmErrorContext = { gid, branchId, endpoint: `${address}${path}`, protocol: 'grpc', status: err.code };
          reject(dtmError(err, context, operation, timeout, this.config.maxAnswerBytes));
        }),
      ),
    );
  }
}

/** Ends a call {@link GrpcTransport.started} counted on `channel`: a retired channel is closed with its last call. */
function ended(channel: Channel): void {
  if (--channel.calls === 0 && channel.retired) channel.client.close();
}

/** Closes `channel` now if no call is under way on it, else with its last call. */
function retire(channel: Channel): void {
  channel.retired = true;
  if (channel.calls === 0) channel.client.close();
}

/** What an error of DTM's gRPC API means (DTM's `DtmError2GrpcError`, read back). */
function dtmError(err: ServiceError, context: DtmErrorContext, operation: string, timeout: number, maxAnswerBytes: number): Error {
  const detail = err.details || err.message;
  if (isTooLarge(err, maxAnswerBytes)) return new DtmServerError(UNANSWERED.dtmGrpc.tooLarge(context.endpoint!, maxAnswerBytes), detail, { ...context, cause: plainCause(err) });
  switch (err.code) {
    case ABORTED:
      return new DtmFailureError(MESSAGES.failureFromDtm(operation, context.gid ?? '?', detail), context);
    case FAILED_PRECONDITION:
      return new DtmOngoingError(detail, context);
    case UNAVAILABLE:
    case DEADLINE_EXCEEDED:
      return new DtmUnavailableError(unansweredMessage(err, UNANSWERED.dtmGrpc, context.endpoint!, detail, timeout), { ...context, cause: plainCause(err) });
    default: {
      // grpc-go's refusal of a request over DTM's limit, before DTM's handler: definite, as DTM's own refusals
      const sizes = err.code === RESOURCE_EXHAUSTED ? DTM_TOO_LARGE.exec(detail) : null;
      if (sizes) return new DtmServerError(MESSAGES.dtmRefusedDefinitely(operation, context.gid ?? '?', MESSAGES.dtmGrpcRequestTooLarge(sizes[1], sizes[2]), MESSAGES.dtmGrpcRequestTooLargeFix, `gRPC status ${err.code}: ${detail}`), detail, context);
      const refused = definiteServerRefusal(detail);
      if (refused) return new DtmServerError(MESSAGES.dtmRefusedDefinitely(operation, context.gid ?? '?', refused.cause, refused.fix, `gRPC status ${err.code}: ${detail}`), detail, context);
      return new DtmServerError(MESSAGES.serverGrpcStatus(context.endpoint!, err.code, detail), detail, context);
    }
  }
}

/** What a gRPC branch's answer means (DTM's `GrpcError2DtmError`: ABORTED with the bare message ONGOING is the old ONGOING). */
function branchError(err: ServiceError, context: DtmErrorContext, timeout: number, maxAnswerBytes: number): Error {
  const detail = err.details || err.message;
  const withCode = { ...context, status: err.code };
  if (isTooLarge(err, maxAnswerBytes)) return new DtmServerError(UNANSWERED.branch.tooLarge(context.endpoint!, maxAnswerBytes), detail, { ...withCode, cause: plainCause(err) });
  const refused = requestTooLarge(err, maxAnswerBytes);
  if (refused) return new DtmServerError(MESSAGES.branchRequestTooLarge(context.endpoint!, refused.size, refused.limit), detail, withCode);
  if (err.code === ABORTED && detail !== 'ONGOING') return new DtmFailureError(detail || 'FAILURE', withCode);
  if (err.code === ABORTED || err.code === FAILED_PRECONDITION) return new DtmOngoingError(MESSAGES.branchOngoing(context.endpoint!, `gRPC status ${err.code}`, detail), withCode);
  if (err.code === UNAVAILABLE || err.code === DEADLINE_EXCEEDED) {
    return new DtmUnavailableError(unansweredMessage(err, UNANSWERED.branch, context.endpoint!, detail, timeout), { ...withCode, cause: plainCause(err) });
  }
  return new DtmServerError(MESSAGES.branchGrpcStatus(context.endpoint!, err.code, detail), detail, withCode);
}

/**
 * The message of an UNAVAILABLE or DEADLINE_EXCEEDED from `endpoint`, with `messages` for its peer
 * (DTM or a branch): a proxy's answer ({@link peerAnswer}); a deadline passed on a connection the
 * peer had accepted (HTTP/2 set up: grpc-js then names the peer's `remote_addr` in the details,
 * and does not while still waiting for a connection); else "could not reach" (with "no connection"
 * when grpc-js says it was still waiting for one: {@link neverSent}).
 */
function unansweredMessage(err: ServiceError, messages: UnansweredMessages, endpoint: string, detail: string, timeout: number): string {
  const answer = err.code === UNAVAILABLE ? peerAnswer(err) : undefined;
  if (answer) return messages.proxy(endpoint, answer, detail, timeout);
  if (err.code === DEADLINE_EXCEEDED && (err.details ?? '').includes('remote_addr=')) return messages.noAnswer(endpoint, timeout, detail);
  return messages.unavailable(endpoint, neverSent(err) ? `no connection: ${detail}` : detail, timeout);
}

/**
 * Who answered an UNAVAILABLE, when it was the peer and not grpc-js itself (no connection,
 * connection dropped, stream refused: no response metadata): the HTTP status of a plain HTTP
 * answer (`"503"`: grpc-js turns 429, 502, 503 and 504 into UNAVAILABLE), or `"grpc"` for a gRPC
 * answer (its response headers are in the error's metadata). DTM itself answers UNAVAILABLE only to
 * a submit with waitResult whose first round could not reach a gRPC branch (it passes the branch's
 * status on, code and all): the message of a gRPC answer names both (`proxyUnavailable`).
 */
export function peerAnswer(err: ServiceError): string | undefined {
  const http = /^Received HTTP status code (\d{3})$/.exec(err.details ?? '');
  if (http) return http[1];
  return err.metadata && Object.keys(err.metadata.getMap()).length > 0 ? 'grpc' : undefined;
}

/** Whether grpc-js refused the answer for its size (`grpc.max_receive_message_length`, which is `maxAnswerBytes`), not the peer. */
function isTooLarge(err: ServiceError, maxAnswerBytes: number): boolean {
  return err.code === RESOURCE_EXHAUSTED && TOO_LARGE.exec(err.details ?? '')?.[2] === String(maxAnswerBytes);
}

/**
 * The request's size and the limit, when the peer (a grpc-js server) refused the request for its
 * size (its `maxReceiveMessageLength`): grpc-js's words with a limit that is not this client's
 * `maxAnswerBytes`. Undefined for any other error.
 */
function requestTooLarge(err: ServiceError, maxAnswerBytes: number): { size: string; limit: string } | undefined {
  if (err.code !== RESOURCE_EXHAUSTED) return undefined;
  const sizes = TOO_LARGE.exec(err.details ?? '');
  return sizes && sizes[2] !== String(maxAnswerBytes) ? { size: sizes[1], limit: sizes[2] } : undefined;
}

/**
 * A plain Error with the gRPC error's code and message (grpc-js errors carry the call's metadata,
 * which may hold forwarded headers), and `connected: false` when the call was never sent
 * ({@link neverSent}), as the HTTP transport marks a deadline passed before the connection.
 */
function plainCause(err: ServiceError): Error {
  const cause = Object.assign(new Error(err.details || err.message), { code: err.code });
  return neverSent(err) ? Object.assign(cause, { connected: false }) : cause;
}

/** What grpc-js names, in a DEADLINE_EXCEEDED's details, as the stage a call waited in before it had a connection. */
const WAITING_FOR_CONNECTION = /(?:^|,)(?:Waiting for LB pick|waiting for name resolution|waiting for metadata filters)(?:,|$)/;

/**
 * Whether a DEADLINE_EXCEEDED passed before the call had a connection, so nothing of it was sent:
 * grpc-js names the stage it still waited in (`Waiting for LB pick`: no connection ready yet), and
 * names no earlier attempt (`previous attempts`, which may have been sent) and no peer
 * (`remote_addr=`). Positive evidence only: details worded otherwise (another grpc-js) read as
 * "may have been sent".
 */
export function neverSent(err: ServiceError): boolean {
  const details = err.details ?? '';
  return err.code === DEADLINE_EXCEEDED && WAITING_FOR_CONNECTION.test(details) && !details.includes('previous attempts') && !details.includes('remote_addr=');
}
