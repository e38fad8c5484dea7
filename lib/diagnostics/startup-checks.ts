import { Inject, Injectable, Logger, Optional, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { ApplicationConfig } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { barrierWriteRefusal, insertBarrierSql, quotedBarrierTable } from '../barrier/barrier.sql.js';
import { assertBarrierKeysBinary, ensureBarrierSchema } from '../barrier/ensure-barrier-schema.js';
import type { BarrierConnection, BarrierDatabase, BarrierDialect } from '../barrier/barrier.types.js';
import { DtmBranchRegistry } from '../branches/branch.registry.js';
import { isRedisConnection } from '../branches/branch-handler.binding.js';
import { branchMetadataOf, dtmMethodOf, isDtmEndpoint, pipeName } from '../branches/branch-metadata.accessor.js';
import { DtmGrpcIntegration } from '../branches/grpc/dtm-grpc.integration.js';
import { WORKFLOW_SERVICE } from '../branches/workflow-resume.js';
import { DtmClient } from '../client/dtm.client.js';
import { isLoopbackHost, urlHostname } from '../config/dtm-config.keys.js';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { DTM_BARRIER_CONNECTIONS, DTM_CONFIG, DTM_XA_CONNECTIONS } from '../dtm.constants.js';
import { MESSAGES } from '../dtm.messages.js';
import { withTimeout } from './probe.js';
import { DtmUnavailableError } from '../errors/dtm-unavailable.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import type { XaConnection, XaDatabase } from '../xa/xa.types.js';
import type { BranchKind } from '../transport/dtm.types.js';
import { messageOf } from '../errors/text-of.js';

/** The action kind of each undo kind whose payload is its action's. */
const ACTION_OF_UNDO: Partial<Record<BranchKind, BranchKind>> = { 'saga-compensate': 'saga-action', 'tcc-cancel': 'tcc-try' };


/**
 * What the module checks once, when the app starts (never on a branch call): the methods of the
 * branch routes against those DTM uses, global guards in front of them (a warning naming them), the
 * barrier table on every barrier connection a branch uses and every database of `xaConnections` (or
 * its creation, `create_barrier_table`), that each PostgreSQL database of `xaConnections` can prepare transactions, and, with `startup_ping`,
 * that DTM answers.
 */
@Injectable()
export class DtmStartupChecks implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('DtmStartup');
  /** Set by {@link onModuleDestroy}: the start-up ping tries no more. */
  private closed = false;
  /** Ends the start-up ping's wait before its next attempt (set while it waits). */
  private wakePing?: () => void;

  constructor(
    @Inject(DTM_CONFIG) private readonly config: DtmConfig,
    private readonly registry: DtmBranchRegistry,
    private readonly client: DtmClient,
    private readonly appConfig: ApplicationConfig,
    @Optional() private readonly grpc?: DtmGrpcIntegration,
    @Optional() @Inject(DTM_BARRIER_CONNECTIONS) private readonly barrierConnections?: Map<string, BarrierConnection>,
    @Optional() @Inject(DTM_XA_CONNECTIONS) private readonly xaConnections?: Map<string, XaDatabase>,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.enabled) return;
    this.checkRouteMethods();
    this.checkGlobalGuards();
    this.checkUndoPayloadPipes();
    await this.checkAppAddressesResolve();
    await this.checkBarrierTables();
    await this.checkXaDatabases();
    if (this.config.startupPing) await this.ping();
  }

  /**
   * Warns when the host of `app_url` or `grpc_app_address` (a name, not an address) does not resolve
   * here: DTM, in the same network, most likely cannot resolve it either, and then fails every branch
   * call it makes, retried forever, with nothing in this app's log until a wait ends. One lookup each,
   * at once, bounded by `timeout` (at most 3 s); only "no such name" (ENOTFOUND) warns.
   */
  private async checkAppAddressesResolve(): Promise<void> {
    const keys = [
      ['app_url', urlHostname(this.config.appUrl)],
      ['grpc_app_address', this.config.grpcAppAddress ? urlHostname(`http://${this.config.grpcAppAddress}`) : undefined],
    ] as const;
    const ms = Math.min(this.config.timeout * 1000, 3000);
    await Promise.all(
      keys.map(async ([key, host]) => {
        if (!host || isIP(host) || host.startsWith('[') || isLoopbackHost(host)) return;
        try {
          await withTimeout(lookup(host), ms);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOTFOUND') this.logger.warn(MESSAGES.appAddressUnresolved(key, host, code));
        }
      }),
    );
  }

  /** The app closes (possibly while it is still starting): the start-up ping stops, its wait ended now. */
  onModuleDestroy(): void {
    this.closed = true;
    this.wakePing?.();
  }

  /**
   * Warns about a route that is also a gRPC method and serves HTTP with a method DTM does not use
   * (DTM: POST with a payload, GET without; a back-check always GET): it may be served to DTM over
   * gRPC only. An HTTP-only branch route of that kind fails start-up (the branch explorer).
   */
  private checkRouteMethods(): void {
    for (const route of this.registry.all) {
      const method = route.http?.method;
      if (!method || !route.grpc || route.problem) continue;
      const wanted = dtmMethodOf(route.kind);
      if (method !== 'ALL' && method !== wanted) this.logger.warn(MESSAGES.branchWrongMethod(route.handler, route.kind, route.name, method, wanted));
    }
  }

  /**
   * Warns, naming them, about global guards: they run before every branch handler's own guard (HTTP
   * routes, and gRPC methods with inheritAppConfig or in a pure microservice) and before the gRPC
   * workflow resume, on DTM's calls, which carry no credentials. (The HTTP resume is outside the app's guards.)
   */
  private checkGlobalGuards(): void {
    const grpcResume = this.grpc?.serves(WORKFLOW_SERVICE, 'workflow resume') === true;
    if (!grpcResume && !this.registry.all.some((r) => r.http || r.grpc)) return;
    const guards: [type: unknown, name: unknown][] = [
      ...this.appConfig.getGlobalGuards().map((g): [unknown, unknown] => [g?.constructor, g?.constructor?.name]),
      ...this.appConfig.getGlobalRequestGuards().map((w): [unknown, unknown] => [w.metatype, w.metatype?.name ?? String(w.name)]),
    ];
    const names = guards
      .filter(([type]) => !isDtmAwareGuard(type))
      .map(([, name]) => name)
      .filter((n): n is string => typeof n === 'string' && n !== '' && n !== 'Object');
    if (names.length === 0) return;
    this.logger.warn(
      `global guard${names.length > 1 ? 's' : ''} ${names.join(', ')} (APP_GUARD or useGlobalGuards) run${names.length > 1 ? '' : 's'} before every DTM branch handler (HTTP route or gRPC method) and the gRPC workflow resume; ` +
        `DTM's calls carry no user credentials, and a refused call (403, or a gRPC error) is retried by DTM until the transaction times out (a workflow resume: forever). ` +
        `Let DTM's calls through: skip handlers for which isDtmBranchHandler(context.getHandler()) is true (branch calls are checked by DtmBranchGuard, and by branch_auth_keys when set; the workflow resume trusts nothing of the call but the gid)`,
    );
  }

  /**
   * Warns about each compensation / TCC Cancel whose payload parameter has the class of its action's
   * (Try's) under a pipe (the app's global ones, or its own): DTM sends the undo the payload the action
   * got, so a payload the pipe refused there (answered FAILURE: DTM rolls back) is refused here too,
   * and that undo never runs (see the exception filter). Names the handlers, the class and the pipes.
   */
  private checkUndoPayloadPipes(): void {
    const routes = this.registry.all;
    const global = [...this.appConfig.getGlobalPipes().map(pipeName), ...this.appConfig.getGlobalRequestPipes().map((w) => pipeName(w.metatype))];
    for (const undo of routes) {
      const actionKind = ACTION_OF_UNDO[undo.kind];
      if (!actionKind || !undo.payload || undo.problem) continue;
      const action = routes.find((r) => r.kind === actionKind && r.name === undo.name && r.payload?.type === undo.payload!.type);
      const pipes = [...new Set([...global, ...undo.payload.pipes])];
      if (action && pipes.length > 0) this.logger.warn(MESSAGES.undoValidatedLikeAction(undo.handler, undo.kind, undo.name, undo.payload.type.name, action.handler, pipes));
    }
  }

  /**
   * The barrier table on each barrier database a branch uses: checked (a DtmUsageError naming ensureBarrierSchema when missing, the
   * grant when the database user may not insert into it; on MySQL / MariaDB, naming the ALTER when its key columns are character
   * columns), or created with `create_barrier_table`.
   */
  private async checkBarrierTables(): Promise<void> {
    const used = new Set(this.registry.all.map((r) => r.barrier).filter((b): b is string => b !== undefined));
    for (const name of used) {
      const connection = this.barrierConnections?.get(name);
      if (!connection || isRedisConnection(connection)) continue;
      await this.checkBarrierTable(connection as BarrierDatabase, `barrier connection "${name}"`, 'branch');
    }
  }

  /**
   * Each database of `xaConnections` (one connection each, closed again): the barrier table every
   * XA branch writes its row into, checked (a DtmUsageError naming ensureBarrierSchema when missing;
   * on MySQL / MariaDB, naming the ALTER when its key columns are character columns) or created with
   * `create_barrier_table`, as on a barrier connection; and on PostgreSQL `max_prepared_transactions`,
   * which at 0 (PostgreSQL's default, and its Docker image's) makes every PREPARE TRANSACTION fail,
   * so every XA branch on it would fail; a DtmUsageError saying how to fix it. A database that
   * cannot be asked is a warning (it may not be up yet); a `connect()` whose connection the adapter
   * refuses (a pool's: `mysqlXaDatabase`, `pgXaDatabase`) fails the start-up with that `DtmUsageError`.
   */
  private async checkXaDatabases(): Promise<void> {
    for (const [name, db] of this.xaConnections ?? []) {
      let connection: XaConnection;
      try {
        connection = await this.answered(db.connect(), (late) => void late.close().catch(() => undefined));
      } catch (err) {
        // the adapter's refusal of what connect() gave (a pool's connection): every XA action on it would fail
        if (err instanceof DtmUsageError) throw err;
        this.logger.warn(MESSAGES.xaDatabaseUnchecked(name, db.dialect, this.config.barrierTable, messageOf(err)));
        continue;
      }
      try {
        if (db.dialect === 'postgres') await this.checkPreparedTransactions(name, connection);
        await this.checkBarrierTable(xaConnectionAsBarrierDatabase(db.dialect, connection), `XA database "${name}"`, 'xa');
      } finally {
        await this.answered(connection.close()).catch(() => undefined);
      }
    }
  }

  /** PostgreSQL XA database `name`: a DtmUsageError when `max_prepared_transactions` is 0; a warning when it cannot be asked. */
  private async checkPreparedTransactions(name: string, connection: XaConnection): Promise<void> {
    let value: unknown;
    try {
      value = (await this.answered(connection.execute('SHOW max_prepared_transactions', []))).rows[0]?.max_prepared_transactions;
    } catch (err) {
      this.logger.warn(MESSAGES.xaPreparedTransactionsUnchecked(name, messageOf(err)));
      return;
    }
    if (String(value) === '0') throw new DtmUsageError(MESSAGES.xaPreparedTransactionsDisabled(name));
  }

  /**
   * The barrier table on `db`, named `place` in the messages (`barrier connection "pg"`, `XA
   * database "pg"`): created with `create_barrier_table` unless it is there (its CREATE ... IF NOT
   * EXISTS needs the CREATE privilege even then), else checked: missing, a DtmUsageError
   * saying what would fail (`user`: every branch call with its barrier, or every XA branch); on
   * MySQL / MariaDB, character key columns too; then, created or there, the barrier's insert tried
   * and rolled back ({@link checkBarrierInsert}). A database that cannot be asked is a warning (it
   * may not be up yet: not the module's to fail the start for).
   */
  private async checkBarrierTable(db: BarrierDatabase, place: string, user: 'branch' | 'xa'): Promise<void> {
    const table = this.config.barrierTable;
    try {
      await this.answered(db.execute(`SELECT 1 FROM ${quotedBarrierTable(db.dialect, table)} WHERE 1 = 0`, []));
    } catch (err) {
      const refusal = barrierWriteRefusal(err);
      if (refusal === 'permission') throw new DtmUsageError(MESSAGES.barrierTableNotWritable(table, place, db.dialect, user, errorText(err)), { cause: err });
      if (!this.config.createBarrierTable) {
        if (refusal === 'no-table') throw new DtmUsageError(MESSAGES.barrierTableMissing(table, place, db.dialect, user), { cause: err });
        this.logger.warn(MESSAGES.barrierTableUnchecked(table, place, user, errorText(err)));
        return;
      }
      // created only when the look failed (no table, or no answer: the creation then says so), never over a table that is
      // there: CREATE ... IF NOT EXISTS needs the CREATE privilege even then
      await this.answered(ensureBarrierSchema(db, { table })).catch((createError: unknown) => {
        if (!(createError instanceof NoAnswer)) throw createError;
        throw new DtmUnavailableError(MESSAGES.barrierTableNotCreated(table, place, createError.message), { cause: createError });
      });
      await this.checkBarrierInsert(db, table, place, user);
      return;
    }
    await this.checkBarrierInsert(db, table, place, user);
    // MySQL / MariaDB: character key columns fold ids that differ in case into one key (a branch skipped as a duplicate)
    if (db.dialect === 'mysql') {
      await this.answered(assertBarrierKeysBinary(db, table)).catch((err: unknown) => {
        if (err instanceof DtmUsageError) throw err;
        this.logger.warn(MESSAGES.barrierKeysUnchecked(table, place, messageOf(err)));
      });
    }
  }

  /**
   * The barrier's insert of a row of no transaction into `table` on `db`, in a transaction rolled back
   * (nothing kept): a database user without the INSERT (or SELECT) privilege on it is a DtmUsageError
   * naming the grant (every branch call with its barrier would fail, and DTM retry it forever); a
   * read-only database (a replica, a read-only session or user) a warning, as it may take writes later.
   */
  private async checkBarrierInsert(db: BarrierDatabase, table: string, place: string, user: 'branch' | 'xa'): Promise<void> {
    const rolledBack = new Error('the start-up check rolls its insert back');
    const params = ['saga', `nestjs-dtm-startup-check-${randomUUID()}`, '00', 'action', '01', 'action'];
    try {
      await this.answered(
        db.transaction(async (_handle, tx) => {
          await tx.execute(insertBarrierSql(db.dialect, table), params);
          throw rolledBack;
        }),
      );
    } catch (err) {
      if (err === rolledBack) return;
      const refusal = barrierWriteRefusal(err);
      if (refusal === 'permission') throw new DtmUsageError(MESSAGES.barrierTableNotWritable(table, place, db.dialect, user, errorText(err)), { cause: err });
      this.logger.warn(refusal === 'read-only' ? MESSAGES.barrierTableReadOnly(table, place, db.dialect, errorText(err)) : MESSAGES.barrierTableUnchecked(table, place, user, errorText(err)));
    }
  }

  /**
   * `work` (a start-up check's call to a database), or a {@link NoAnswer} once `lynx.dtm.timeout`
   * passed without its answer: a database (or a proxy) that accepts the connection and never answers
   * would otherwise hold the start-up for ever (pg waits without a bound by default). `late` gets what
   * `work` gives after that (a connection to close).
   */
  private answered<T>(work: Promise<T>, late?: (value: T) => void): Promise<T> {
    return withTimeout(work, Math.ceil(this.config.timeout * 1000), () => new NoAnswer(MESSAGES.startupDatabaseNoAnswer(this.config.timeout)), late);
  }

  /**
   * `DtmClient.ping` until DTM answers, at most `startup_ping_attempts` times, `startup_ping_delay`
   * seconds apart; a `DtmUnavailableError` once the app is closed (no attempt after the close).
   */
  private async ping(): Promise<void> {
    const attempts = this.config.startupPingAttempts;
    let last: unknown;
    for (let attempt = 1; ; attempt++) {
      // closed while starting (Nest's close() does not wait for the start-up): DTM is not called again
      if (this.closed) throw new DtmUnavailableError(MESSAGES.startupPingClosed(attempt - 1, attempts, last === undefined ? undefined : errorText(last)), { cause: last });
      try {
        const answer = await this.client.ping();
        this.logger.log(MESSAGES.startupPingAnswered(answer.version, answer.protocol, answer.latencyMs));
        return;
      } catch (err) {
        last = err;
        if (attempt >= attempts) throw new DtmUnavailableError(MESSAGES.startupPingFailed(attempts, errorText(err)), { cause: err });
        if (this.closed) continue;
        this.logger.warn(MESSAGES.startupPingRetrying(attempt, attempts, this.config.startupPingDelay, errorText(err)));
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.config.startupPingDelay * 1000);
          this.wakePing = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wakePing = undefined;
      }
    }
  }
}

/** What `err` says (an Error's message, else its text). */
function errorText(err: unknown): string {
  return messageOf(err);
}

/** A start-up check's database call that had no answer within `lynx.dtm.timeout`. */
class NoAnswer extends Error {}

/** Where {@link DtmAwareGuard} marks a guard class. */
const DTM_AWARE_GUARD = Symbol.for('nestjs-dtm.dtm-aware-guard');

/**
 * Marks a global guard class that lets DTM's calls through (it returns true when
 * {@link isDtmBranchHandler} is true for `context.getHandler()`): the start-up warning about global
 * guards leaves it out. The module cannot check what a guard does; the mark is your word for it.
 */
export function DtmAwareGuard(): ClassDecorator {
  return (target) => {
    Reflect.defineMetadata(DTM_AWARE_GUARD, true, target);
  };
}

/** Whether `type` (a guard's class) is marked with {@link DtmAwareGuard}. */
function isDtmAwareGuard(type: unknown): boolean {
  return typeof type === 'function' && Reflect.getMetadata(DTM_AWARE_GUARD, type) === true;
}

/**
 * Whether `handler` (a guard's `context.getHandler()`) is one DTM calls: a decorated DTM branch
 * handler, or the module's gRPC workflow resume (`workflow.Workflow/Execute`); or the module's gRPC
 * branch manifest (`nestjs_dtm.Branches/Manifest`), which other services' nestjs-dtm read. A global
 * guard can let these calls, which carry no user credentials, through with it.
 */
export function isDtmBranchHandler(handler: unknown): boolean {
  return typeof handler === 'function' && (branchMetadataOf(handler) !== undefined || isDtmEndpoint(handler));
}

/**
 * A start-up connection of an XA database as the barrier database `ensureBarrierSchema` and the
 * table checks take: its statements on that one connection (autocommit), a transaction as BEGIN /
 * COMMIT around `work` there.
 */
function xaConnectionAsBarrierDatabase(dialect: BarrierDialect, connection: XaConnection): BarrierDatabase {
  const tx = { dialect, execute: (sql: string, params: unknown[]) => connection.execute(sql, params) };
  return {
    dialect,
    execute: tx.execute,
    async transaction(work) {
      await connection.execute('BEGIN', []);
      try {
        const result = await work(connection.handle, tx, []);
        await connection.execute('COMMIT', []);
        return result;
      } catch (err) {
        await connection.execute('ROLLBACK', []).catch(() => undefined);
        throw err;
      }
    },
  };
}
