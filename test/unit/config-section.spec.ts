// forRootAsync with the `lynx.dtm` section as @nestjs/config's ConfigService returns it (snake_case
// keys as in the YAML), and a missing section or settings object refused instead of defaults.
import { describe, expect, it } from '@jest/globals';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { Test } from '@nestjs/testing';
import { load } from 'js-yaml';
import { DtmClient, DtmConfigError, DtmModule, resolveDtmConfig } from 'nestjs-dtm';

const YAML = `
lynx:
  dtm:
    server_url: \${DTM_URL:http://dtm.internal:36789/api/dtmsvr}
    app_url: http://orders:3000
    retry_interval: 21
    transaction_timeout: 120
    protocol: http
`;

/** An app whose ConfigService loaded `yaml`, and DtmModule.forRootAsync given `section: config.get('lynx.dtm')`. */
async function bootWithSection(yaml: string, key = 'lynx.dtm') {
  return Test.createTestingModule({
    imports: [
      ConfigModule.forRoot({ ignoreEnvFile: true, load: [() => load(yaml) as Record<string, unknown>] }),
      DtmModule.forRootAsync({ imports: [ConfigModule], inject: [ConfigService], useFactory: (config: ConfigService) => ({ section: config.get(key) }) }),
    ],
  }).compile();
}

/** The DtmConfigError `run` throws (or rejects with). */
async function configErrorOf(run: () => unknown): Promise<DtmConfigError> {
  const error = await Promise.resolve().then(run).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(DtmConfigError);
  return error as DtmConfigError;
}

describe('forRootAsync({ section })', () => {
  it('takes the lynx.dtm section ConfigService loaded from YAML, snake_case keys and ${VAR} placeholders as in a configFile', async () => {
    const module = await bootWithSection(YAML);
    const config = module.get(DtmClient).config;
    expect([config.serverUrl, config.appUrl, config.retryInterval, config.transactionTimeout, config.protocol]).toEqual([
      'http://dtm.internal:36789/api/dtmsvr',
      'http://orders:3000',
      21,
      120,
      'http',
    ]);
    await module.close();
    expect(resolveDtmConfig({ section: { server_url: '${DTM_URL}' } }, { DTM_URL: 'http://from-env:1/api/dtmsvr' }).serverUrl).toBe('http://from-env:1/api/dtmsvr');
  });

  it('a missing section (ConfigService.get answers undefined) fails start-up with a DtmConfigError naming lynx.dtm, not the defaults', async () => {
    const error = await configErrorOf(() => bootWithSection(YAML, 'dtm'));
    expect(error.problems).toEqual([{ path: 'lynx.dtm', message: expect.stringContaining("is undefined: the configuration you read it from has no lynx.dtm section") }]);
    expect((await configErrorOf(() => resolveDtmConfig({ section: null }, {}))).problems[0].message).toMatch(/^is null: /);
  });

  it('refuses camelCase keys in the section, naming the snake_case one, and a section that is not a mapping', async () => {
    const error = await configErrorOf(() => resolveDtmConfig({ section: { serverUrl: 'http://x/api/dtmsvr' } }, {}));
    expect(error.problems).toEqual([{ path: 'lynx.dtm.serverUrl', message: expect.stringContaining('did you mean "server_url"?') }]);
    expect((await configErrorOf(() => resolveDtmConfig({ section: 'http://x' as never }, {}))).problems).toEqual([
      { path: 'lynx.dtm', message: expect.stringContaining('must be a mapping of settings') },
    ]);
  });

  it('inline config overrides the section; `config: undefined` (a missing key) as the only source is an error too, not the defaults', async () => {
    expect(resolveDtmConfig({ section: { retry_interval: 21 }, config: { retryInterval: 30 } }, {}).retryInterval).toBe(30);
    expect(resolveDtmConfig({ section: { retry_interval: 21 }, config: undefined }, {}).retryInterval).toBe(21);
    const error = await configErrorOf(() => resolveDtmConfig({ config: undefined }, {}));
    expect(error.problems).toEqual([{ path: 'config', message: expect.stringContaining("pass `section: config.get('lynx.dtm')`") }]);
    expect(resolveDtmConfig({}, {}).serverUrl).toBe(resolveDtmConfig(undefined, {}).serverUrl);
  });

  it('`configFile: undefined` (the file path read from a missing variable) as the only source is an error, not the defaults', async () => {
    const booting = Test.createTestingModule({
      imports: [
        ConfigModule.forRoot({ ignoreEnvFile: true, load: [() => ({})] }),
        DtmModule.forRootAsync({ imports: [ConfigModule], inject: [ConfigService], useFactory: (config: ConfigService) => ({ configFile: config.get<string>('DTM_CONFIG_FILE') }) }),
      ],
    }).compile();
    const error = await configErrorOf(() => booting);
    expect(error.problems).toEqual([{ path: 'configFile', message: expect.stringContaining('is undefined and nothing else configures the module') }]);
    // beside another source it is only left out
    expect(resolveDtmConfig({ configFile: undefined, config: { retryInterval: 30 } }, {}).retryInterval).toBe(30);
  });
});
