import { BadRequestException, Inject, Injectable, type OnModuleInit, type Type } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, ModulesContainer } from '@nestjs/core';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { DTM_CONFIG } from '../dtm.constants.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { localTransactionOf, takesBarrierTx } from './branch-handler.binding.js';
import { answersItself, branchMetadataOf, dtmMethodOf, filtersTriedBefore, grpcMethodOf, grpcStreamDecoratorOf, hasNonGrpcPattern, payloadParameterOf } from './branch-metadata.accessor.js';
import { DtmBranchExceptionFilter } from './branch-exception.filter.js';
import { DtmBranchGuard } from './branch.guard.js';
import { DtmBranchRegistry, type BranchRoute } from './branch.registry.js';
import { HttpBranchLocator } from './http/http-branch.locator.js';
import type { BranchKind } from '../transport/dtm.types.js';

/** The undo op of the kinds serving one: the module answers it itself for an action refused for its keys. */
const UNDO_OP_OF: Partial<Record<BranchKind, string>> = { 'saga-compensate': 'compensate', 'tcc-cancel': 'cancel', xa: 'rollback' };

/** The errors the module's filter turns into DTM's answers: FAILURE, ONGOING, and a pipe's refusal of a payload (FAILURE). */
const MODULE_ANSWERS: readonly (abstract new (...args: never[]) => unknown)[] = [DtmFailureError, DtmOngoingError, BadRequestException];

/** Whether a filter catching `catches` (none: everything) would catch one of {@link MODULE_ANSWERS}. */
function catchesModuleAnswers({ catches }: { catches: unknown[] }): boolean {
  if (catches.length === 0) return true;
  return catches.some((type) => typeof type === 'function' && typeof type.prototype === 'object' && MODULE_ANSWERS.some((answer) => answer === type || answer.prototype instanceof type));
}

/**
 * Finds the decorated branch handlers once, at start-up, and registers each with where DTM
 * reaches it: its HTTP route (http/http-branch.locator.ts) and / or its `@GrpcMethod`.
 */
@Injectable()
export class DtmBranchExplorer implements OnModuleInit {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly http: HttpBranchLocator,
    private readonly registry: DtmBranchRegistry,
    @Inject(DTM_CONFIG) private readonly config: DtmConfig,
    private readonly modules: ModulesContainer,
  ) {}

  onModuleInit(): void {
    this.assertSetUpOnce();
    const routes: BranchRoute[] = [];
    for (const wrapper of this.discovery.getControllers()) {
      const { instance, metatype } = wrapper;
      if (!instance || !metatype) continue;
      const prototype = Object.getPrototypeOf(instance) as Record<string, unknown>;
      // the guard, instantiated in the controller's module, carries what wrapped handlers need
      const guard = wrapper.host?.injectables.get(DtmBranchGuard)?.instance as DtmBranchGuard | undefined;
      for (const methodName of this.scanner.getAllMethodNames(prototype)) {
        const handler = prototype[methodName] as object;
        const branch = branchMetadataOf(handler);
        if (!branch) continue;
        const where = `${(metatype as Type).name}.${methodName}`;
        const bound = localTransactionOf(handler); // what the decorators (and @UseBarrier) made the handler run in
        const { route: http, problem } = this.http.locate(metatype as Type, handler, where, wrapper.host?.metatype);
        const grpc = grpcMethodOf(handler);
        const route: BranchRoute = { kind: branch.kind, name: branch.name, options: branch.options, handler: where, barrier: bound && 'barrier' in bound ? bound.barrier : undefined, http, grpc, problem };
        const payload = payloadParameterOf(metatype as Type, methodName);
        if (payload) route.payload = payload;
        // DTM calls every branch with one unary call: a streaming handler would never be called as one
        const stream = grpcStreamDecoratorOf(handler);
        if (stream) route.problem = MESSAGES.branchOnGrpcStream(where, stream);
        else if (!http && !grpc) route.problem = hasNonGrpcPattern(handler) ? MESSAGES.branchOnPatternOnly(where) : MESSAGES.branchNotRoute(where);
        // reached over TCP, NATS, Kafka, ...: no DTM call, nothing the guard can check (it refuses such calls)
        if (!route.problem && hasNonGrpcPattern(handler)) route.problem = MESSAGES.branchOtherPattern(where);
        if (!route.problem && bound && !guard?.runtime) route.problem = MESSAGES.noBranchRuntime(where);
        // @BarrierTx() with nothing to give: every call would answer 500 (barrierTxFactory), retried by DTM forever
        if (!route.problem && !bound && takesBarrierTx(handler)) route.problem = MESSAGES.branchBarrierTxWithoutTransaction(where);
        // the module answers some calls of a handler in a local transaction without running it, and a success only once it committed
        if (!route.problem && bound && http && answersItself(metatype as Type, methodName)) route.problem = MESSAGES.branchAnswersItself(where);
        // without one, the undo call of an action refused for its keys (see the branch guard) is answered without running it too
        const undoOp = UNDO_OP_OF[branch.kind];
        if (!route.problem && !bound && http && undoOp && answersItself(metatype as Type, methodName)) route.problem = MESSAGES.branchUndoAnswersItself(where, undoOp);
        // DTM calls a branch with one method (an HTTP-only route serving another is never called; with a gRPC method too, a start-up warning)
        const wanted = dtmMethodOf(branch.kind);
        if (!route.problem && http && !grpc && http.method !== 'ALL' && http.method !== wanted) route.problem = MESSAGES.branchWrongMethod(where, branch.kind, branch.name, http.method, wanted);
        // a filter of its own that Nest tries before the module's and that catches DTM's answers: a FAILURE answered 200 is the step's success
        const first = route.problem ? undefined : filtersTriedBefore(handler, DtmBranchExceptionFilter).find(catchesModuleAnswers);
        if (first) route.problem = MESSAGES.branchFilterBeforeModule(where, first.name);
        // the guard checks tokens with the keys of the DtmModule it sees: without one, it would let any call run
        if (!route.problem && this.config.branchAuthKeys && !guard?.runtime) route.problem = MESSAGES.noBranchRuntimeAuth(where);
        routes.push(route);
      }
    }
    this.registry.register(routes);
  }

  /**
   * A `DtmUsageError` when the app holds more than one DtmModule (forRoot / forRootAsync imported by
   * two modules): each would find every decorated handler of the app and serve it with its own
   * options, and the second one's HTTP integration is not installed (see DtmHttpIntegration).
   */
  private assertSetUpOnce(): void {
    const instances = [...this.modules.values()].filter((m) => m.providers.has(DtmBranchExplorer));
    if (instances.length < 2) return;
    const importers = new Set<string>();
    for (const m of this.modules.values()) if ([...m.imports].some((i) => instances.includes(i))) importers.add(m.metatype?.name ?? m.name);
    throw new DtmUsageError(MESSAGES.dtmModuleSetUpTwice(instances.length, [...importers]));
  }
}
