// What travels between nestjs-dtm and DTM's HTTP API, exactly as DTM spells it (snake_case,
// seconds, payloads as strings). Internal: http-wire.ts converts; no type here is exported.
import type { BranchStatus, TransactionStatus, TransactionType } from '../dtm.types.js';

type WireTransType = TransactionType;

/** Options DTM reads from prepare / submit bodies (Go SDK `TransOptions`). */
export interface WireTransOptions {
  wait_result?: boolean;
  timeout_to_fail?: number;
  request_timeout?: number;
  retry_interval?: number;
  branch_headers?: Record<string, string>;
  concurrent: boolean;
  retry_limit?: number;
}

/** Body of `/prepare`, `/submit` and `/abort`, keys in the Go SDK's order. */
export interface WireTransRequest extends WireTransOptions {
  gid: string;
  trans_type: WireTransType;
  custom_data?: string;
  steps?: Record<string, string>[];
  payloads?: string[];
  query_prepared?: string;
  protocol: string;
  rollback_reason?: string;
  /** Workflow submit: status, rollback_reason, result. */
  req_extra?: Record<string, string>;
}

/** Body of `/registerBranch`: every value a string. */
export type WireRegisterBranch = Record<string, string> & { gid: string; trans_type: WireTransType; branch_id: string; data?: string };

/** A global transaction in `/query` and `/all` answers. */
export interface WireTransGlobal {
  /** The row's id on DTM's SQL stores (MySQL, Postgres); 0 or absent on boltdb and Redis. */
  id?: number;
  gid: string;
  trans_type: WireTransType;
  status: TransactionStatus;
  protocol?: string;
  steps?: Record<string, string>[] | null;
  payloads?: string[] | null;
  custom_data?: string;
  query_prepared?: string;
  rollback_reason?: string;
  options?: string;
  wait_result?: boolean;
  timeout_to_fail?: number;
  request_timeout?: number;
  retry_interval?: number;
  retry_limit?: number;
  retry_count?: number;
  branch_headers?: Record<string, string> | null;
  concurrent?: boolean;
  next_cron_interval?: number;
  next_cron_time?: string;
  create_time?: string;
  update_time?: string;
  finish_time?: string;
  rollback_time?: string;
  result?: string;
}

/** A branch row in `/query` answers. */
export interface WireTransBranch {
  gid: string;
  branch_id: string;
  op: string;
  status: BranchStatus;
  url?: string;
  /** The stored request body, base64. */
  bin_data?: string;
  create_time?: string;
  update_time?: string;
  finish_time?: string;
  rollback_time?: string;
}

/** The answer of `GET /query?gid=`. */
export interface WireQueryAnswer {
  transaction: WireTransGlobal | null;
  branches: WireTransBranch[] | null;
}

/** The answer of `GET /all`. */
export interface WireListAnswer {
  transactions: WireTransGlobal[] | null;
  next_position: string;
}

/** The answer of `POST /prepareWorkflow`: the stored global and every recorded branch. */
export interface WireWorkflowAnswer {
  transaction: WireTransGlobal | null;
  progresses: WireTransBranch[] | null;
}
