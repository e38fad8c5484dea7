// Decorated HTTP branches in apps that use ordinary Nest routing features (@HttpCode, versioning,
// controller hosts, @Res()), on Express and on Fastify: the module computes the URL DTM calls and
// answers DTM's protocol, or refuses at start-up what DTM could never call right.
import { afterEach, describe, expect, it } from '@jest/globals';
import { Controller, HttpCode, Post, Version, VERSION_NEUTRAL, VersioningType, type INestApplication, type Type } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { DtmBranchRegistryError, DtmClient, DtmModule, SagaAction, type DtmConfigInput } from 'nestjs-dtm';
import { harness, queryTrans } from '../support/harness.js';
import { ADAPTERS, CapturingLogger, type AdapterName } from './branch-app.js';

/** The handlers that ran, in order. */
const ran: string[] = [];

@Controller('coded')
class CodedAbove {
  @Post('a')
  @HttpCode(204)
  @SagaAction('codedAbove', { compensate: false })
  a() {
    ran.push('codedAbove');
  }
}

@Controller('coded-below')
class CodedBelow {
  @Post('a')
  @SagaAction('codedBelow', { compensate: false })
  @HttpCode(204)
  a() {
    ran.push('codedBelow');
  }
}

@Controller('versioned')
class VersionedByDefault {
  @Post('a')
  @SagaAction('byDefault', { compensate: false })
  a() {
    ran.push('byDefault');
  }
}

@Controller({ path: 'neutral', version: VERSION_NEUTRAL })
class NeutralController {
  @Post('a')
  @SagaAction('neutral', { compensate: false })
  a() {
    ran.push('neutral');
  }
}

@Controller('neutral-too')
class NeutralMethod {
  @Post('a')
  @Version([VERSION_NEUTRAL, '2'])
  @SagaAction('neutralToo', { compensate: false })
  a() {
    ran.push('neutralToo');
  }
}

const apps: INestApplication[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  ran.length = 0;
});

/** Starts an app with `controllers` on `adapter` (after `setup`, listening on 127.0.0.1), or the error its start-up threw. */
async function start(adapter: AdapterName, controllers: Type[], setup: (app: INestApplication) => void = () => undefined, config: DtmConfigInput = {}, port = 0): Promise<INestApplication | Error> {
  const moduleRef = await Test.createTestingModule({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, ...config } })],
    controllers,
  }).compile();
  const app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter(), { forceCloseConnections: true }) : moduleRef.createNestApplication({ forceCloseConnections: true });
  app.useLogger(new CapturingLogger());
  setup(app);
  apps.push(app);
  return app.listen(port, '127.0.0.1').then(
    () => app,
    (err: unknown) => err as Error,
  );
}

/** Runs a one-step saga on branch `name` and waits for its outcome: DTM's final status. */
async function sagaOutcome(app: INestApplication, name: string): Promise<string> {
  const client = app.get(DtmClient);
  const final = await client.newSaga(await client.generateGid()).add(name, { amount: 1 }).submitAndWait({ timeout: 8 });
  return (await queryTrans(final.gid)).transaction?.status ?? 'none';
}

describe.each(ADAPTERS)('decorated branches and Nest routing on %s', (adapter) => {
  it('an @HttpCode(204) written above the branch decorator fails start-up naming the handler (DTM reads every status but 200 as an error and would call it forever)', async () => {
    const started = await start(adapter, [CodedAbove]);
    expect(started).toBeInstanceOf(DtmBranchRegistryError);
    expect((started as Error).message).toContain('CodedAbove.a answers its success with 204 (@HttpCode(204)), but DTM reads every status but 200 as an error');
    expect(ran).toEqual([]);
  });

  it('an @HttpCode(204) written below the branch decorator is overridden: the branch answers 200 and DTM records the saga succeeded', async () => {
    const app = await start(adapter, [CodedBelow]);
    expect(app).not.toBeInstanceOf(Error);
    expect(await sagaOutcome(app as INestApplication, 'codedBelow')).toBe('succeed');
    expect(ran).toEqual(['codedBelow']);
  });

  it("header versioning with a defaultVersion fails start-up for a branch route without a version of its own (Nest would answer DTM's calls, which name no version, 404)", async () => {
    const started = await start(adapter, [VersionedByDefault], (app) => app.enableVersioning({ type: VersioningType.HEADER, header: 'X-API-Version', defaultVersion: '1' }));
    expect(started).toBeInstanceOf(DtmBranchRegistryError);
    expect((started as Error).message).toContain('VersionedByDefault.a is versioned by HEADER (the defaultVersion of enableVersioning), which DTM cannot send per branch');
  });

  it('a version-neutral branch route under header or media-type versioning starts, and DTM records its saga succeeded', async () => {
    const byHeader = await start(adapter, [NeutralController], (app) => app.enableVersioning({ type: VersioningType.HEADER, header: 'X-API-Version', defaultVersion: '1' }));
    expect(byHeader).not.toBeInstanceOf(Error);
    expect(await sagaOutcome(byHeader as INestApplication, 'neutral')).toBe('succeed');
    const byMediaType = await start(adapter, [NeutralMethod], (app) => app.enableVersioning({ type: VersioningType.MEDIA_TYPE, key: 'v=' }));
    expect(byMediaType).not.toBeInstanceOf(Error);
    expect(await sagaOutcome(byMediaType as INestApplication, 'neutralToo')).toBe('succeed');
    expect(ran).toEqual(['neutral', 'neutralToo']);
  });
});
