// Branch contracts: what a participant service serves, named and typed, in a small TypeScript
// module both the participant and its callers import. Types only, plus the branch name and kind a
// caller resolves against the participant's manifest and the schema the participant validates with.
import type { Payload } from '../transport/dtm.types.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { MESSAGES } from '../dtm.messages.js';

/**
 * The Standard Schema interface (https://standardschema.dev, v1), as zod, valibot, arktype and
 * others implement it: written out here, as the spec asks, so that no validator is a dependency.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

/** What a Standard Schema's `validate` answers: the value, or the issues. */
export type StandardSchemaResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<{ readonly message: string; readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined }> };

/** The kinds of branch a contract names: what a caller does with it (saga step, TCC branch, message branch, XA branch). */
export type RemoteBranchKind = 'saga' | 'tcc' | 'msg' | 'xa';

/** One branch of a contract, before it is given its service: its kind, payload type and optional schema. */
export interface BranchDeclaration<K extends RemoteBranchKind = RemoteBranchKind, P = Payload> {
  readonly kind: K;
  /** Checks the payload where the participant serves the branch (a FAILURE when it does not pass). */
  readonly schema?: StandardSchemaV1<P, unknown>;
  /** Never set: carries the payload type. */
  readonly payloadType?: P;
}

/**
 * A branch of another service, by name: `{ service, branch }` (untyped, any kind), or an entry of
 * a contract made with {@link defineBranches} (typed: its kind and payload are checked at compile time).
 */
export interface RemoteBranch<K extends RemoteBranchKind = RemoteBranchKind, P = Payload> {
  /** The service's name: a key of the caller's `lynx.dtm.services`. */
  readonly service: string;
  /** The branch's name in the service (its decorator's name). */
  readonly branch: string;
  /** Its kind; absent: checked only against the service's manifest at run time. */
  readonly kind?: K;
  /** Checks the payload where the participant serves the branch, and (HTTP branches) where the caller adds it, before anything reaches DTM. */
  readonly schema?: StandardSchemaV1<P, unknown>;
  /** Never set: carries the payload type. */
  readonly payloadType?: P;
}

/** The payload type of a contract entry (`BranchPayload<typeof Bank.withdraw>`): what the caller sends and the handler receives. */
export type BranchPayload<B> = B extends RemoteBranch<RemoteBranchKind, infer P> ? P : never;

/** A contract: every branch of `service`, each a {@link RemoteBranch} of its kind and payload type. */
export type BranchContract<S extends string, T extends Record<string, BranchDeclaration>> = {
  readonly [N in keyof T & string]: T[N] extends BranchDeclaration<infer K, infer P> ? RemoteBranch<K, P> & { readonly service: S; readonly branch: N } : never;
};

/**
 * The payload type an entry declared with `P` carries: `P`, but any {@link Payload} for `unknown` (a
 * schema without an input type, as `StandardSchemaV1` unparameterised, zod's `z.preprocess()` or
 * `z.unknown()`; or `sagaBranch<unknown>()`), which no contract, decorator or `add()` would take;
 * `any` (`sagaBranch<any>()`, zod's `z.any()`) stays `any`.
 */
export type DeclaredPayload<P> = 0 extends 1 & P ? P : unknown extends P ? Payload : P;

function declaration<K extends RemoteBranchKind, P>(kind: K, schema?: StandardSchemaV1<P, unknown>): BranchDeclaration<K, DeclaredPayload<P>> {
  return (schema ? { kind, schema } : { kind }) as BranchDeclaration<K, DeclaredPayload<P>>;
}

/** A saga step (`@SagaAction` + `@SagaCompensate`) whose payload is `P` (given, or the input type of `schema`). */
export const sagaBranch = <P = Payload>(schema?: StandardSchemaV1<P, unknown>): BranchDeclaration<'saga', DeclaredPayload<P>> => declaration('saga', schema);
/** A TCC branch (`@TccTry` + `@TccConfirm` + `@TccCancel`) whose payload is `P`. */
export const tccBranch = <P = Payload>(schema?: StandardSchemaV1<P, unknown>): BranchDeclaration<'tcc', DeclaredPayload<P>> => declaration('tcc', schema);
/** A two-phase message branch (`@MsgBranch`) whose payload is `P` (DTM retries a message branch until it succeeds, so its schema is checked by the caller only, for an HTTP branch). */
export const msgBranch = <P = Payload>(schema?: StandardSchemaV1<P, unknown>): BranchDeclaration<'msg', DeclaredPayload<P>> => declaration('msg', schema);
/** An XA branch (`@XaBranch`) whose payload is `P`. */
export const xaBranch = <P = Payload>(schema?: StandardSchemaV1<P, unknown>): BranchDeclaration<'xa', DeclaredPayload<P>> => declaration('xa', schema);

const BRANCH_NAME = /^[A-Za-z0-9_][\w.:-]{0,127}$/;

/**
 * The contract of service `service` (the name callers configure under `lynx.dtm.services`): its
 * branches by name, e.g. `defineBranches('bank', { withdraw: sagaBranch<{ account: string; amount: number }>() })`.
 * The participant names its handlers with the entries (`@SagaAction(Bank.withdraw)`), callers add them (`saga.add(Bank.withdraw, payload)`).
 */
export function defineBranches<const S extends string, const T extends Record<string, BranchDeclaration>>(service: S, branches: T): BranchContract<S, T> {
  if (typeof service !== 'string' || !SERVICE_NAME.test(service)) throw new DtmUsageError(MESSAGES.contractServiceName(shownValue(service)));
  if (typeof branches !== 'object' || branches === null) throw new DtmUsageError(MESSAGES.notAnObject(`the branches of defineBranches(${JSON.stringify(service)})`, branches));
  const contract: Record<string, RemoteBranch> = {};
  for (const [branch, decl] of Object.entries(branches)) {
    if (!BRANCH_NAME.test(branch)) throw new DtmUsageError(MESSAGES.contractBranchName(service, branch));
    const kind = (decl as Partial<BranchDeclaration> | null | undefined)?.kind;
    if (typeof decl !== 'object' || decl === null || !KINDS.has(kind as string)) throw new DtmUsageError(MESSAGES.contractDeclaration(service, branch, typeof decl === 'function' ? 'a function' : shownValue(kind ?? decl)));
    if (decl.schema !== undefined && !isStandardSchema(decl.schema)) throw new DtmUsageError(MESSAGES.notStandardSchema(branch));
    contract[branch] = Object.freeze({ service, branch, kind: decl.kind, ...(decl.schema ? { schema: decl.schema } : {}) });
  }
  return Object.freeze(contract) as BranchContract<S, T>;
}

/** The kinds a declaration may have. */
const KINDS: ReadonlySet<string> = new Set<RemoteBranchKind>(['saga', 'tcc', 'msg', 'xa']);

/** `value` as a message shows it. */
function shownValue(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : value === null ? 'null' : typeof value;
}

/** What a service name may be (a key of `lynx.dtm.services`). */
export const SERVICE_NAME = /^[A-Za-z][\w-]{0,63}$/;

/** Whether `value` is a {@link RemoteBranch} (an object naming a service and a branch). */
export function isRemoteBranch(value: unknown): value is RemoteBranch {
  return typeof value === 'object' && value !== null && typeof (value as RemoteBranch).service === 'string' && typeof (value as RemoteBranch).branch === 'string';
}

/** Whether `value` implements the Standard Schema interface (v1). */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  const standard = (value as { '~standard'?: { version?: unknown; validate?: unknown } } | null | undefined)?.['~standard'];
  return typeof standard === 'object' && standard !== null && standard.version === 1 && typeof standard.validate === 'function';
}

/** Runs `schema` on `value`: undefined when it passes, else the issues as one message (`path: message; ...`). */
export async function schemaProblem(schema: StandardSchemaV1, value: unknown): Promise<string | undefined> {
  const result = await schema['~standard'].validate(value);
  if (!result.issues) return undefined;
  return result.issues
    .map((issue) => {
      const path = (issue.path ?? []).map((p) => String(typeof p === 'object' && p !== null ? p.key : p)).join('.');
      return path ? `${path}: ${issue.message}` : issue.message;
    })
    .join('; ');
}
