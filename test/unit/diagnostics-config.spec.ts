// The lynx.dtm keys of the start-up checks, and the server_url path check, validated like every key (YAML paths in errors).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { DtmConfigError, resolveDtmConfig } from 'nestjs-dtm';

const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-diag-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function problemsOfYaml(yaml: string): readonly { path: string; message: string }[] {
  const file = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, `lynx:\n  dtm:\n${yaml}`);
  try {
    resolveDtmConfig({ configFile: file }, {});
  } catch (err) {
    expect(err).toBeInstanceOf(DtmConfigError);
    return (err as DtmConfigError).problems;
  }
  throw new Error('expected a DtmConfigError');
}

describe('start-up check keys', () => {
  it('reads startup_ping, its attempts and delay, and create_barrier_table from YAML', () => {
    const file = join(dir, 'ok.yaml');
    writeFileSync(file, 'lynx:\n  dtm:\n    startup_ping: true\n    startup_ping_attempts: 4\n    startup_ping_delay: 0.5\n    create_barrier_table: true\n');
    expect(resolveDtmConfig({ configFile: file }, {})).toMatchObject({ startupPing: true, startupPingAttempts: 4, startupPingDelay: 0.5, createBarrierTable: true });
  });

  it('refuses bad values with their YAML paths', () => {
    const problems = problemsOfYaml('    startup_ping: "yes"\n    startup_ping_attempts: 2.5\n    startup_ping_delay: -1\n    create_barrier_table: 1\n');
    expect(problems).toEqual([
      { path: 'lynx.dtm.startup_ping', message: expect.stringContaining('true or false') },
      { path: 'lynx.dtm.startup_ping_attempts', message: expect.stringContaining('a whole number from 1 to 1000') },
      { path: 'lynx.dtm.startup_ping_delay', message: expect.stringContaining('must be') },
      { path: 'lynx.dtm.create_barrier_table', message: expect.stringContaining('true or false') },
    ]);
    expect(problemsOfYaml('    startup_ping_attempts: 0\n')).toEqual([{ path: 'lynx.dtm.startup_ping_attempts', message: expect.stringContaining('from 1 to 1000') }]);
  });
});

describe('server_url without /api/dtmsvr', () => {
  it.each([
    ['http://dtm:36789', 'http://dtm:36789/api/dtmsvr'],
    ['http://dtm:36789/', 'http://dtm:36789/api/dtmsvr'],
    ['https://gw.example/dtm', 'https://gw.example/dtm/api/dtmsvr'],
    ['http://dtm:36789/api', 'http://dtm:36789/api/api/dtmsvr'],
  ])('%s is a DtmConfigError that gives the URL to use', (given, fixed) => {
    const problems = problemsOfYaml(`    server_url: "${given}"\n`);
    expect(problems).toEqual([{ path: 'lynx.dtm.server_url', message: expect.stringContaining(`must end with /api/dtmsvr`) }]);
    expect(problems[0].message).toContain(`use "${fixed}"`);
  });

  it('inline config too, with the camelCase path; a URL that ends with /api/dtmsvr (or /api/dtmsvr/) is taken', () => {
    let error: unknown;
    try {
      resolveDtmConfig({ config: { serverUrl: 'http://localhost:36789' } }, {});
    } catch (err) {
      error = err;
    }
    expect((error as DtmConfigError).problems).toEqual([{ path: 'config.serverUrl', message: expect.stringContaining('use "http://localhost:36789/api/dtmsvr"') }]);
    expect(resolveDtmConfig({ config: { serverUrl: 'http://gw/x/api/dtmsvr/' } }, {}).serverUrl).toBe('http://gw/x/api/dtmsvr');
  });

  it('never prints credentials of the URL', () => {
    const problems = problemsOfYaml('    server_url: "http://user:s3cret-pass@dtm:36789"\n');
    expect(problems[0].message).not.toContain('s3cret-pass');
  });
});
