// Which workflows an app hosts, against the real DTM server: a @DtmWorkflow on a provider that is
// not of the default scope (request-scoped, transient, or depending on REQUEST), two workflows of
// one name, and a name with characters a URL's query must escape, resumed by DTM over HTTP.
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import { Inject, Injectable, Module, Scope, type INestApplication, type Type } from '@nestjs/common';
import { LazyModuleLoader, NestFactory, REQUEST } from '@nestjs/core';
import { DtmBranchRegistryError, DtmClient, DtmModule, DtmUsageError, DtmWorkflow, DtmWorkflowPendingError, type WorkflowContext } from 'nestjs-dtm';
import { cronUntilStatus, harness, queryTrans } from '../support/harness.js';
import { freePort } from '../support/services/process.js';

@Injectable()
class Rates {
  rate(): number {
    return 2;
  }
}

@Injectable({ scope: Scope.REQUEST })
class RequestScopedWorkflows {
  constructor(private readonly rates: Rates) {}
  @DtmWorkflow('scoped.request.v1')
  async run(wf: WorkflowContext<unknown>) {
    return wf.step('rate').run(() => this.rates.rate());
  }
}

@Injectable({ scope: Scope.TRANSIENT })
class TransientWorkflows {
  constructor(private readonly rates: Rates) {}
  @DtmWorkflow('scoped.transient.v1')
  async run(wf: WorkflowContext<unknown>) {
    return wf.step('rate').run(() => this.rates.rate());
  }
}

/** Request-scoped without saying so: it depends on REQUEST. */
@Injectable()
class RequestBoundWorkflows {
  constructor(
    @Inject(REQUEST) readonly request: unknown,
    private readonly rates: Rates,
  ) {}
  @DtmWorkflow('scoped.implicit.v1')
  async run(wf: WorkflowContext<unknown>) {
    return wf.step('rate').run(() => this.rates.rate());
  }
}

@Injectable()
class Orders {
  @DtmWorkflow('order.v1')
  async place(wf: WorkflowContext<unknown>) {
    return wf.step('a').run(() => 1);
  }
}

@Injectable()
class OtherOrders {
  @DtmWorkflow('order.v1')
  async place(wf: WorkflowContext<unknown>) {
    return wf.step('b').run(() => 2);
  }
}

@Injectable()
class LateWorkflows {
  @DtmWorkflow('late.v1')
  async run(wf: WorkflowContext<unknown>) {
    return wf.step('a').run(() => 'late');
  }
}

/** A module an app loads after start-up (LazyModuleLoader). */
@Module({ providers: [LateWorkflows] })
class LateModule {}

/** Executions per gid of the workflow with the unusual name; the first one of a gid fails with a plain error (left pending). */
const runs = new Map<string, number>();
const ODD_NAME = 'pay & ship+fast #1, 100%/ü?=';

@Injectable()
class OddlyNamed {
  @DtmWorkflow(ODD_NAME)
  async run(wf: WorkflowContext<{ n: number }>) {
    const n = (runs.get(wf.gid) ?? 0) + 1;
    runs.set(wf.gid, n);
    if (n === 1) throw new Error('crashed before its step');
    return wf.step('a').run(() => wf.input.n * 2);
  }
}

const apps: INestApplication[] = [];
afterAll(async () => {
  for (const app of apps) await app.close();
});

/** An app of `providers` (its workflows resumed over HTTP at its own port); init() only, or listening. */
/** A workflow whose class no module lists (the newcomer's forgotten `providers: [...]`). */
@Injectable()
class UnlistedWorkflows {
  @DtmWorkflow('unlisted.v1')
  async run() {
    return 1;
  }
}

async function startApp(providers: Type[], branchAuthKeys?: string[]): Promise<{ app: INestApplication; client: DtmClient }> {
  const port = await freePort();
  @Module({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, appUrl: `http://127.0.0.1:${port}`, retryInterval: 1, branchAuthKeys } })],
    providers: [Rates, ...providers],
  })
  class WorkflowsModule {}
  const app = await NestFactory.create(WorkflowsModule, { logger: false, forceCloseConnections: true });
  apps.push(app);
  await app.listen(port, '127.0.0.1');
  return { app, client: app.get(DtmClient) };
}

const startError = (providers: Type[]) => startApp(providers).then(() => undefined, (e: unknown) => e);

describe('workflow registration', () => {
  it('a @DtmWorkflow on a request-scoped, a transient, or a REQUEST-dependent provider: start-up fails naming each (before: the app started, and every execution ran with the dependencies undefined, the workflow pending in DTM forever)', async () => {
    const error = await startError([RequestScopedWorkflows, TransientWorkflows, RequestBoundWorkflows]);
    expect(error).toBeInstanceOf(DtmBranchRegistryError);
    const problems = (error as DtmBranchRegistryError).problems;
    expect(problems).toHaveLength(3);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^@DtmWorkflow\('scoped\.request\.v1'\) is on RequestScopedWorkflows\.run, whose provider is request-scoped .* put the workflow on a provider of the default scope/),
        expect.stringMatching(/^@DtmWorkflow\('scoped\.transient\.v1'\) is on TransientWorkflows\.run, whose provider is transient/),
        expect.stringMatching(/^@DtmWorkflow\('scoped\.implicit\.v1'\) is on RequestBoundWorkflows\.run, whose provider is request-scoped \(Scope\.REQUEST, or it depends on REQUEST/),
      ]),
    );
  });

  it('a @DtmWorkflow on a class no module lists: executeWorkflow refuses it naming the class and saying to list it in providers (before: "no @DtmWorkflow named", as if it were declared nowhere), DTM holds nothing', async () => {
    expect(UnlistedWorkflows.name).toBe('UnlistedWorkflows');
    const { client } = await startApp([]);
    const gid = await client.generateGid();
    const error = await client.executeWorkflow('unlisted.v1', gid, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toBe(
      "no @DtmWorkflow named \"unlisted.v1\" among the providers of this app (known: none): UnlistedWorkflows.run is decorated @DtmWorkflow('unlisted.v1'), but Nest never created UnlistedWorkflows; list it in the providers of a module the app imports",
    );
    expect((await queryTrans(gid)).transaction).toBeNull();
  });

  it('two workflows of one name: start-up fails naming both handlers', async () => {
    const error = await startError([Orders, OtherOrders]);
    expect(error).toBeInstanceOf(DtmBranchRegistryError);
    expect((error as Error).message).toBe("@DtmWorkflow('order.v1') is on Orders.place and OtherOrders.place: workflow names must be unique; rename one (a new version: a new name)");
  });

  it('one @DtmWorkflow whose provider two modules list (not one exporting it): start-up fails saying so, naming the modules (before: "is on Orders.place and Orders.place ... rename one", for a workflow declared once)', async () => {
    @Module({ providers: [Orders] })
    class ShopModule {}
    @Module({ providers: [Orders] })
    class BillingModule {}
    const port = await freePort();
    @Module({ imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, appUrl: `http://127.0.0.1:${port}` } }), ShopModule, BillingModule] })
    class TwiceModule {}
    const error = await NestFactory.create(TwiceModule, { logger: false })
      .then(async (app) => {
        apps.push(app);
        await app.init();
      })
      .then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(DtmBranchRegistryError);
    expect((error as Error).message).toBe(
      "@DtmWorkflow('order.v1') is on Orders.place, a provider listed by ShopModule and BillingModule, which makes an instance each: list it in one module and export it from there",
    );
  });

  it('a workflow in a module loaded after start-up (LazyModuleLoader): executeWorkflow refuses it saying so, DTM holds nothing (before: "no @DtmWorkflow named", as if it were declared nowhere)', async () => {
    const { app, client } = await startApp([]);
    await app.get(LazyModuleLoader).load(() => LateModule);
    const gid = await client.generateGid();
    const error = await client.executeWorkflow('late.v1', gid, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toBe(
      "@DtmWorkflow('late.v1') is on LateWorkflows.run, whose module was loaded after start-up (LazyModuleLoader): workflows are found when the app starts, as DTM may resume one on any instance, also one that never loaded that module; import its module in the app's modules at start-up",
    );
    expect((await queryTrans(gid)).transaction).toBeNull();
    await expect(client.executeWorkflow('nowhere.v1', gid, {})).rejects.toThrow('no @DtmWorkflow named "nowhere.v1" (known: none)');
  });

  it.each([['', undefined], [' and authenticated calls', [randomBytes(33).toString('base64')]]] as const)('a name with characters a query escapes (& + # % / ? = space, non-ASCII, a comma)%s: left pending, DTM resumes it over HTTP under that name and it succeeds', async (_with, keys) => {
    const { client } = await startApp([OddlyNamed], keys ? [...keys] : undefined);
    const gid = await client.generateGid();
    await expect(client.executeWorkflow(ODD_NAME, gid, { n: 21 })).rejects.toBeInstanceOf(DtmWorkflowPendingError);
    await cronUntilStatus(gid, 'succeed', { intervalMs: 1000 }); // DTM resuming the workflow
    expect(runs.get(gid)).toBe(2);
    await expect(client.executeWorkflow(ODD_NAME, gid, { n: 0 })).resolves.toEqual({ status: 'succeed', result: 42 });
  });
});
