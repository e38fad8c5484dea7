// The one place where the neutral transaction terms and DTM's gRPC messages (dtmgimp.proto, field
// names as the proto spells them, payloads as bytes) are converted into each other.
import type { BranchStatus, TransactionStatus } from '../dtm.types.js';
import type { BranchRegistration, TransactionRequest, WorkflowProgress } from '../dtm-transport.js';

/** `dtmgimp.DtmRequest` as @grpc/proto-loader takes it (keepCase). */
export interface GrpcDtmRequest {
  Gid: string;
  TransType: string;
  TransOptions: {
    WaitResult: boolean;
    TimeoutToFail: number;
    RetryInterval: number;
    BranchHeaders: Record<string, string>;
    RequestTimeout: number;
    RetryLimit: number;
  };
  CustomedData: string;
  BinPayloads: Uint8Array[];
  QueryPrepared: string;
  Steps: string;
  ReqExtra: Record<string, string>;
  RollbackReason: string;
}

/** `dtmgimp.DtmBranchRequest`. */
export interface GrpcDtmBranchRequest {
  Gid: string;
  TransType: string;
  BranchID: string;
  Op: string;
  Data: Record<string, string>;
  BusiPayload: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const NO_MAP: Record<string, string> = {};

/**
 * A prepare / submit / abort request as DTM's Go SDK builds it (`GetDtmRequest`): `Steps` is the
 * steps' JSON text (`null` for TCC / XA), payloads are bytes. Saga concurrency travels in
 * `CustomedData` only (the gRPC API has no `concurrent` field).
 */
export function toGrpcRequest(request: TransactionRequest): GrpcDtmRequest {
  const { options } = request;
  return {
    Gid: request.gid,
    TransType: request.transType,
    TransOptions: {
      WaitResult: options.waitResult === true,
      TimeoutToFail: options.timeoutToFail,
      RetryInterval: options.retryInterval ?? 0, // 0: DTM's own, as the Go SDK sends when none is set
      BranchHeaders: options.branchHeaders,
      RequestTimeout: options.branchTimeout,
      RetryLimit: options.retryLimit ?? 0,
    },
    CustomedData: request.customData ?? '',
    BinPayloads: (request.payloads as Uint8Array[] | undefined) ?? [], // the gRPC transport encodes payloads as bytes
    QueryPrepared: request.queryPrepared ?? '',
    Steps: JSON.stringify(request.steps ?? null),
    ReqExtra: request.extra ?? NO_MAP,
    RollbackReason: request.rollbackReason ?? '',
  };
}

/** A `RegisterBranch` request: the registration's fields go in `Data`, its payload in `BusiPayload`. */
export function toGrpcRegistration(registration: BranchRegistration): GrpcDtmBranchRequest {
  return {
    Gid: registration.gid,
    TransType: registration.transType,
    BranchID: registration.branchId,
    Op: '',
    Data: registration.fields,
    BusiPayload: (registration.payload as Uint8Array | undefined) ?? EMPTY,
  };
}

/** `dtmgimp.DtmProgressesReply`, as @grpc/proto-loader decodes it (keepCase, defaults). */
export interface GrpcDtmProgressesReply {
  Transaction?: { Gid: string; Status: string; RollbackReason: string; Result: string };
  Progresses: { Status: string; BinData: Buffer; BranchID: string; Op: string }[];
}

/** A `PrepareWorkflow` reply in neutral terms (the gRPC API never carries the result). */
export function fromGrpcProgress(reply: GrpcDtmProgressesReply): WorkflowProgress {
  return {
    status: (reply.Transaction?.Status || 'prepared') as TransactionStatus,
    rollbackReason: reply.Transaction?.RollbackReason || undefined,
    progresses: (reply.Progresses ?? []).map((p) => ({ branchId: p.BranchID, op: p.Op, status: p.Status as BranchStatus, data: Buffer.from(p.BinData ?? []) })),
  };
}
