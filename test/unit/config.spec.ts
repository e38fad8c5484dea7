import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { DtmConfigError, resolveDtmConfig, type DtmConfigProblem } from 'nestjs-dtm';

const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function yamlFile(text: string): string {
  const file = join(dir, `config-${++fileCount}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** The problems of the DtmConfigError that resolving `options` throws. */
function problemsOf(options: Parameters<typeof resolveDtmConfig>[0], env: NodeJS.ProcessEnv = {}): DtmConfigProblem[] {
  try {
    resolveDtmConfig(options, env);
  } catch (err) {
    expect(err).toBeInstanceOf(DtmConfigError);
    return [...(err as DtmConfigError).problems];
  }
  throw new Error('expected a DtmConfigError');
}

describe('resolveDtmConfig', () => {
  it('gives the documented defaults when nothing is configured', () => {
    expect(resolveDtmConfig({}, {})).toEqual({
      enabled: true,
      serverUrl: 'http://localhost:36789/api/dtmsvr',
      grpcServer: 'localhost:36790',
      protocol: 'http',
      timeout: 10,
      retryInterval: 10,
      transactionTimeout: 60,
      branchTimeout: 30,
      passThroughHeaders: [],
      passTraceContext: true,
      barrierTable: 'dtm_barrier.barrier',
    });
  });

  it('reads the lynx.dtm section of a YAML file, and inline config overrides it', () => {
    const file = yamlFile(`
server:
  port: 8080
lynx:
  other: {}
  dtm:
    enabled: true
    server_url: "http://dtm.internal:36789/api/dtmsvr/"
    grpc_server: "dtm.internal:36790"
    protocol: grpc
    timeout: 2.5
    retry_interval: 15
    transaction_timeout: 120
    branch_timeout: 7
    pass_through_headers: ["X-Request-ID", "x-user-id"]
    app_url: "http://orders:3000/"
    barrier_table: "payments.dtm_barrier"
`);
    expect(resolveDtmConfig({ configFile: file }, {})).toEqual({
      enabled: true,
      serverUrl: 'http://dtm.internal:36789/api/dtmsvr',
      grpcServer: 'dtm.internal:36790',
      protocol: 'grpc',
      timeout: 2.5,
      retryInterval: 15,
      transactionTimeout: 120,
      branchTimeout: 7,
      passThroughHeaders: ['x-request-id', 'x-user-id'],
      passTraceContext: true,
      appUrl: 'http://orders:3000',
      barrierTable: 'payments.dtm_barrier',
    });
    const merged = resolveDtmConfig({ configFile: file, config: { branchTimeout: 3, passThroughHeaders: ['X-Tenant'] } }, {});
    expect(merged.branchTimeout).toBe(3);
    expect(merged.passThroughHeaders).toEqual(['x-tenant']);
    expect(merged.retryInterval).toBe(15);
  });

  it('replaces ${VAR} and ${VAR:default} from the environment, typed like YAML', () => {
    const file = yamlFile(`
lynx:
  dtm:
    server_url: "http://\${DTM_HOST}:\${DTM_PORT:36789}/api/dtmsvr"
    timeout: \${DTM_TIMEOUT:4}
    enabled: \${DTM_ENABLED:true}
    branch_timeout: "\${DTM_BRANCH_TIMEOUT}"
`);
    const config = resolveDtmConfig({ configFile: file }, { DTM_HOST: 'dtm-a', DTM_BRANCH_TIMEOUT: '9' });
    expect(config.serverUrl).toBe('http://dtm-a:36789/api/dtmsvr');
    expect(config.timeout).toBe(4);
    expect(config.enabled).toBe(true);
    expect(config.branchTimeout).toBe(9);
  });

  it('names a missing environment variable and how to give a default', () => {
    const file = yamlFile('lynx:\n  dtm:\n    server_url: "${DTM_URL}"\n');
    const problems = problemsOf({ configFile: file });
    expect(problems).toContainEqual({ path: 'lynx.dtm.server_url', message: expect.stringContaining('DTM_URL is not set') });
    expect(problems[0].message).toContain('${DTM_URL:default}');
  });

  it('reports every problem at once, each with its YAML path and the fix', () => {
    const file = yamlFile(`
lynx:
  dtm:
    enabled: "yes"
    server_url: "ftp://dtm:21/api"
    grpc_server: "dtm"
    protocol: grpcs
    timeout: -1
    retry_interval: 1.5
    transaction_timeout: "60"
    branch_timeout: 0
    pass_through_headers: "X-Request-ID"
    barrier_table: "barrier; drop table x"
    serverurl: "http://x"
    retry_intervall: 10
    colour: blue
`);
    let error: unknown;
    try {
      resolveDtmConfig({ configFile: file }, {});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(DtmConfigError);
    const problems = (error as DtmConfigError).problems;
    const byPath = Object.fromEntries(problems.map((p) => [p.path, p.message]));
    expect(byPath['lynx.dtm.enabled']).toBe('must be true or false, got "yes"');
    expect(byPath['lynx.dtm.server_url']).toMatch(/must be an http\(s\) URL .*got "ftp:\/\/dtm:21\/api"/);
    expect(byPath['lynx.dtm.grpc_server']).toMatch(/host:port/);
    expect(byPath['lynx.dtm.protocol']).toBe('must be http or grpc, got "grpcs"');
    expect(byPath['lynx.dtm.timeout']).toBe('must be a positive number of seconds, got -1');
    expect(byPath['lynx.dtm.retry_interval']).toMatch(/whole number of seconds.*1\.5/);
    expect(byPath['lynx.dtm.transaction_timeout']).toBe('must be a number of seconds, got "60"');
    expect(byPath['lynx.dtm.branch_timeout']).toBe('must be a positive number of seconds, got 0');
    expect(byPath['lynx.dtm.pass_through_headers']).toMatch(/list of header names/);
    expect(byPath['lynx.dtm.barrier_table']).toMatch(/table name or schema\.name/);
    expect(byPath['lynx.dtm.serverurl']).toMatch(/unknown key; did you mean "server_url"\?/);
    expect(byPath['lynx.dtm.retry_intervall']).toMatch(/did you mean "retry_interval"\?/);
    expect(byPath['lynx.dtm.colour']).toMatch(/^unknown key \(known keys: enabled, server_url, /);
    expect(problems).toHaveLength(13);
    expect((error as Error).message).toContain('13 problems');
    expect((error as Error).message).toContain('  - lynx.dtm.timeout: must be a positive number of seconds, got -1');
  });

  it('checks inline config the same way, with camelCase paths', () => {
    const problems = problemsOf({ config: { serverUrl: 'localhost:36789', timeout: 0, branchTimout: 3 } as never });
    expect(problems.map((p) => p.path)).toEqual(['config.serverUrl', 'config.timeout', 'config.branchTimout']);
    expect(problems[2].message).toContain('did you mean "branchTimeout"?');
  });

  it('reports a missing file with the path it looked at', () => {
    const problems = problemsOf({ configFile: join(dir, 'nope.yaml') });
    expect(problems).toEqual([{ path: 'configFile', message: expect.stringContaining(`looked at ${join(dir, 'nope.yaml')}`) }]);
  });

  it('reports a YAML syntax error with its line and column', () => {
    const file = yamlFile('lynx:\n  dtm:\n    server_url: [http://x\n    timeout: 3\n');
    const problems = problemsOf({ configFile: file });
    expect(problems).toHaveLength(1);
    expect(problems[0].message).toMatch(/YAML syntax error in .* at line \d+, column \d+: /);
  });

  it('reports a file without a lynx.dtm section, or with a section that is not a mapping', () => {
    expect(problemsOf({ configFile: yamlFile('lynx:\n  grpc: {}\n') })[0]).toEqual({ path: 'lynx.dtm', message: expect.stringContaining('has no lynx.dtm section') });
    expect(problemsOf({ configFile: yamlFile('lynx:\n  dtm: [1, 2]\n') })[0]).toEqual({ path: 'lynx.dtm', message: expect.stringContaining('must be a mapping') });
  });

  it('refuses framing, connection, proxy and DTM / gRPC metadata names in pass_through_headers, naming them', () => {
    const file = yamlFile(`
lynx:
  dtm:
    pass_through_headers: [X-Request-ID, Host, content-length, Transfer-Encoding, Connection, Keep-Alive, TE, Trailer, Upgrade, Expect, Proxy-Authorization, Content-Type, dtm-gid, grpc-timeout, Authorization]
`);
    const problems = problemsOf({ configFile: file });
    expect(problems).toEqual([{ path: 'lynx.dtm.pass_through_headers', message: expect.stringContaining('must not list Host, content-length, Transfer-Encoding, Connection, Keep-Alive, TE, Trailer, Upgrade, Expect, Proxy-Authorization, Content-Type, dtm-gid, grpc-timeout: ') }]);
    expect(problemsOf({ config: { passThroughHeaders: ['HOST'] } })).toEqual([{ path: 'config.passThroughHeaders', message: expect.stringContaining('must not list HOST') }]);
    // names that only start like one are fine
    expect(resolveDtmConfig({ config: { passThroughHeaders: ['X-Host', 'Hostname', 'Authorization', 'X-Proxy-Id'] } }, {}).passThroughHeaders).toEqual(['x-host', 'hostname', 'authorization', 'x-proxy-id']);
  });

  it('pass_trace_context turns the W3C trace context passthrough off; it must be true or false', () => {
    expect(resolveDtmConfig({ configFile: yamlFile('lynx:\n  dtm:\n    pass_trace_context: false\n') }, {}).passTraceContext).toBe(false);
    expect(problemsOf({ configFile: yamlFile('lynx:\n  dtm:\n    pass_trace_context: "no"\n') })).toEqual([{ path: 'lynx.dtm.pass_trace_context', message: 'must be true or false, got "no"' }]);
  });

  it('accepts enabled: false with nothing else', () => {
    expect(resolveDtmConfig({ configFile: yamlFile('lynx:\n  dtm:\n    enabled: false\n') }, {}).enabled).toBe(false);
  });
});
