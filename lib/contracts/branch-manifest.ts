// The branch manifest: what a participant service publishes about its decorated branches (name,
// kind, the ops of each and where DTM reaches each op over HTTP and / or gRPC), so that callers can
// add them by name. It holds nothing secret: the same targets DTM stores with every transaction.
import type { BranchKind } from '../transport/dtm.types.js';
import type { RemoteBranchKind } from './branch-contract.js';

/** The manifest's format tag. */
export const MANIFEST_FORMAT = 'nestjs-dtm.branches/1';

/** The HTTP path of the manifest (on the adapter, without the app's global prefix). */
export const MANIFEST_PATH = '/dtm/branches';

/** The gRPC method of the manifest (protos/branches.proto). */
export const MANIFEST_GRPC_METHOD = '/nestjs_dtm.Branches/Manifest';

/** Where DTM reaches one op of a branch. */
export interface ManifestTargets {
  http?: string;
  grpc?: string;
}

/** One branch of a manifest. */
export interface ManifestBranch {
  name: string;
  kind: RemoteBranchKind;
  /** Each op the branch accepts, with its targets. */
  ops: Record<string, ManifestTargets>;
}

/** What `GET /dtm/branches` answers. */
export interface BranchManifest {
  format: typeof MANIFEST_FORMAT;
  branches: ManifestBranch[];
}

/** The kind and op each decorated handler kind stands for in a manifest (back-checks are the app's own, not published). */
export const MANIFEST_OP: Readonly<Partial<Record<BranchKind, { kind: RemoteBranchKind; op: string }>>> = {
  'saga-action': { kind: 'saga', op: 'action' },
  'saga-compensate': { kind: 'saga', op: 'compensate' },
  'tcc-try': { kind: 'tcc', op: 'try' },
  'tcc-confirm': { kind: 'tcc', op: 'confirm' },
  'tcc-cancel': { kind: 'tcc', op: 'cancel' },
  xa: { kind: 'xa', op: 'action' },
  msg: { kind: 'msg', op: 'action' },
};

/**
 * A branch name a decorator takes (and a manifest may list): not empty, no space or control
 * character, no `/` (a target would be read instead), at most 128 characters.
 */
export const BRANCH_NAME_RULE = /^[^\x00-\x20\x7f/]{1,128}$/;

/** The ops a caller needs of each kind (a saga step's compensation is optional). */
export const REQUIRED_OPS: Readonly<Record<RemoteBranchKind, readonly string[]>> = {
  saga: ['action'],
  tcc: ['try', 'confirm', 'cancel'],
  msg: ['action'],
  xa: ['action'],
};
