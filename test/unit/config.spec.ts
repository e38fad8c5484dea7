import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from '@jest/globals';
import { DtmConfigError, resolveDtmConfig, type DtmConfigProblem } from 'nestjs-dtm';
import { BranchAuth, type SignedCall } from '../../lib/auth/branch-auth.js';

const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function yamlFile(text: string): string {
  const file = join(dir, `config-${++fileCount}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** The DtmConfigError that resolving `options` throws. */
function configErrorOf(options: Parameters<typeof resolveDtmConfig>[0], env: NodeJS.ProcessEnv = {}): DtmConfigError {
  try {
    resolveDtmConfig(options, env);
  } catch (err) {
    expect(err).toBeInstanceOf(DtmConfigError);
    return err as DtmConfigError;
  }
  throw new Error('expected a DtmConfigError');
}

/** The problems of the DtmConfigError that resolving `options` throws. */
function problemsOf(options: Parameters<typeof resolveDtmConfig>[0], env: NodeJS.ProcessEnv = {}): DtmConfigProblem[] {
  return [...configErrorOf(options, env).problems];
}

describe('resolveDtmConfig', () => {
  it('gives the documented defaults when nothing is configured', () => {
    expect(resolveDtmConfig({}, {})).toEqual({
      enabled: true,
      serverUrl: 'http://localhost:36789/api/dtmsvr',
      grpcServer: 'localhost:36790',
      protocol: 'http',
      timeout: 10,
      transactionTimeout: 60,
      sagaTimeout: 0,
      branchTimeout: 30,
      maxAnswerBytes: 8 * 1024 * 1024,
      passThroughHeaders: [],
      passTraceContext: true,
      barrierTable: 'dtm_barrier.barrier',
      branchAuthCheckActions: false,
      branchAuthIssueWindow: 900,
      publishBranches: false,
      services: {},
      startupPing: false,
      startupPingAttempts: 10,
      startupPingDelay: 3,
      createBarrierTable: false,
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
    saga_timeout: 0
    branch_timeout: 7
    max_answer_bytes: 1048576
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
      sagaTimeout: 0,
      branchTimeout: 7,
      maxAnswerBytes: 1048576,
      passThroughHeaders: ['x-request-id', 'x-user-id'],
      passTraceContext: true,
      appUrl: 'http://orders:3000',
      barrierTable: 'payments.dtm_barrier',
      branchAuthCheckActions: false,
      branchAuthIssueWindow: 900,
      publishBranches: false,
      services: {},
      startupPing: false,
      startupPingAttempts: 10,
      startupPingDelay: 3,
      createBarrierTable: false,
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

  it('a value that is only a placeholder and becomes empty is not set: its default applies (${APP_URL:} with APP_URL unset or empty), a list drops it', () => {
    const file = yamlFile(`
lynx:
  dtm:
    app_url: "\${APP_URL:}"
    grpc_app_address: \${GRPC_APP_ADDRESS}
    timeout: \${DTM_TIMEOUT:}
    pass_through_headers: [x-tenant, "\${EXTRA_HEADER:}"]
    server_url: "http://dtm\${DTM_PORT:}/api/dtmsvr"
`);
    const config = resolveDtmConfig({ configFile: file }, { GRPC_APP_ADDRESS: '' });
    expect([config.appUrl, config.grpcAppAddress, config.timeout, config.passThroughHeaders]).toEqual([undefined, undefined, 10, ['x-tenant']]);
    expect(config.serverUrl).toBe('http://dtm/api/dtmsvr'); // part of a value: replaced by nothing
    const set = resolveDtmConfig({ configFile: file }, { APP_URL: 'http://orders:3000', EXTRA_HEADER: 'x-user', GRPC_APP_ADDRESS: 'orders:50051' });
    expect([set.appUrl, set.grpcAppAddress, set.passThroughHeaders]).toEqual(['http://orders:3000', 'orders:50051', ['x-tenant', 'x-user']]);
  });

  it('text from the environment is taken as it is: a ` #` or quotes in it are kept, and branch_auth_keys are text even when all digits', () => {
    const file = yamlFile(`
lynx:
  dtm:
    app_url: \${APP_URL}
    barrier_table: \${BARRIER_TABLE}
    branch_auth_keys: ["\${DTM_KEY}"]
`);
    const env = { APP_URL: 'http://orders:3000/#x', BARRIER_TABLE: "'app.barrier'", DTM_KEY: '12345678901234567890123456789012' };
    const problems = problemsOf({ configFile: file }, env);
    // the quotes reach the check (it refuses them) instead of being taken off without a word
    expect(problems.map((p) => p.path)).toEqual(['lynx.dtm.app_url', 'lynx.dtm.barrier_table']);
    const config = resolveDtmConfig({ configFile: file }, { ...env, APP_URL: 'http://orders:3000', BARRIER_TABLE: 'app.barrier' });
    const call: SignedCall = { channel: 'dtm', gid: 'g-1', transType: 'saga', branchId: '01', op: 'action', target: '/pay', payload: '{}' };
    expect(config.branchAuthKeys!.sign(call)).toBe(new BranchAuth([env.DTM_KEY]).sign(call));
    const hashed = 'abcdefghijklmnop #qrstuvwxyz0123456';
    const cut = yamlFile('lynx:\n  dtm:\n    branch_auth_keys: ["${DTM_KEY}"]\n');
    expect(resolveDtmConfig({ configFile: cut }, { DTM_KEY: hashed }).branchAuthKeys!.sign(call)).toBe(new BranchAuth([hashed]).sign(call));
  });

  it('a host:port is a host name or IP and a port: credentials, a path or a query in grpc_server are refused, the secret not printed', () => {
    for (const value of ['s3cret@dtm:36790', 'dtm?token=s3cret:36790', 'dtm#s3cret:36790', 'dtm%20x:36790']) {
      const problems = problemsOf({ config: { grpcServer: value } });
      expect(problems).toEqual([{ path: 'config.grpcServer', message: expect.stringContaining('host:port') }]);
      expect(problems[0].message).not.toContain('s3cret');
    }
    for (const value of ['dtm-1.internal_x:36790', '10.0.0.7:36790', '[::1]:36790', '[fe80::1%eth0]:36790']) expect(resolveDtmConfig({ config: { grpcServer: value } }, {}).grpcServer).toBe(value);
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
    const error = configErrorOf({ configFile: file });
    const problems = error.problems;
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

  it('names every bad entry of pass_through_headers at once: names that are not header names and headers that are refused', () => {
    const file = yamlFile('lynx:\n  dtm:\n    pass_through_headers: [Host, "bad header", X-Request-ID, Content-Length]\n');
    const problems = problemsOf({ configFile: file });
    expect(problems.map((p) => p.path)).toEqual(['lynx.dtm.pass_through_headers']);
    expect(problems[0].message).toContain('must list HTTP header names (letters, digits, -), these are not: "bad header"');
    expect(problems[0].message).toContain('must not list Host, Content-Length: framing, connection and proxy headers');
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

  it('reports a lynx.dtm section that is there but empty (every key commented out) as empty, not as missing', () => {
    const problems = problemsOf({ configFile: yamlFile('lynx:\n  dtm:\n    # server_url: http://dtm:36789/api/dtmsvr\n') });
    expect(problems).toEqual([{ path: 'lynx.dtm', message: expect.stringContaining('is empty (YAML null)') }]);
    expect(problems[0].message).not.toContain('has no lynx.dtm section');
    expect(problems[0].message).toContain('dtm: {}');
    // the same section read by a configuration loader (ConfigService.get('lynx.dtm') answers null)
    expect(problemsOf({ section: null })).toEqual([{ path: 'lynx.dtm', message: expect.stringContaining('is null: the lynx.dtm section your configuration loader read is empty') }]);
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

  it('refuses -bin names (binary gRPC metadata) in pass_through_headers, naming them and the YAML path', () => {
    const problems = problemsOf({ configFile: yamlFile('lynx:\n  dtm:\n    pass_through_headers: [X-Request-ID, x-ctx-bin, Host]\n') });
    expect(problems).toEqual([{ path: 'lynx.dtm.pass_through_headers', message: expect.stringMatching(/^must not list Host: .*; and it must not list x-ctx-bin: a name ending in -bin is gRPC binary metadata/) }]);
    // a name that only holds "bin" is fine
    expect(resolveDtmConfig({ config: { passThroughHeaders: ['X-Bin-Id', 'x-binary'] } }, {}).passThroughHeaders).toEqual(['x-bin-id', 'x-binary']);
  });

  it('pass_trace_context turns the W3C trace context passthrough off; it must be true or false', () => {
    expect(resolveDtmConfig({ configFile: yamlFile('lynx:\n  dtm:\n    pass_trace_context: false\n') }, {}).passTraceContext).toBe(false);
    expect(problemsOf({ configFile: yamlFile('lynx:\n  dtm:\n    pass_trace_context: "no"\n') })).toEqual([{ path: 'lynx.dtm.pass_trace_context', message: 'must be true or false, got "no"' }]);
  });

  it('accepts 0 from YAML for saga_timeout (no saga timeout) and transaction_timeout (the DTM server default)', () => {
    const config = resolveDtmConfig({ configFile: yamlFile('lynx:\n  dtm:\n    saga_timeout: 0\n    transaction_timeout: 0\n') }, {});
    expect([config.sagaTimeout, config.transactionTimeout]).toEqual([0, 0]);
    expect(resolveDtmConfig({ configFile: yamlFile('lynx:\n  dtm:\n    saga_timeout: 600\n') }, {}).sagaTimeout).toBe(600);
  });

  it('accepts enabled: false with nothing else', () => {
    expect(resolveDtmConfig({ configFile: yamlFile('lynx:\n  dtm:\n    enabled: false\n') }, {}).enabled).toBe(false);
  });
});

describe('services (branches of other services by name)', () => {
  it('reads each service with its URL or gRPC address; refresh defaults to 30 seconds', () => {
    const file = yamlFile(`
lynx:
  dtm:
    publish_branches: true
    services:
      bank:
        url: "\${BANK_URL}/"
      stock:
        grpc: stock:50051
        refresh: 5
`);
    const config = resolveDtmConfig({ configFile: file }, { BANK_URL: 'http://bank:3000' });
    expect(config.publishBranches).toBe(true);
    expect(config.services).toEqual({ bank: { url: 'http://bank:3000', refresh: 30 }, stock: { grpc: 'stock:50051', refresh: 5 } });
  });

  it('reports every problem of every service with its YAML path', () => {
    const file = yamlFile(`
lynx:
  dtm:
    services:
      bank:
        url: "ftp://bank"
      stock:
        grpc: stock
        refresh: 0
      both:
        url: http://a:1
        grpc: a:2
      none: {}
      "1bad":
        url: http://b:1
      typo:
        ulr: http://c:1
`);
    const byPath = Object.fromEntries(problemsOf({ configFile: file }).map((p) => [p.path, p.message]));
    expect(byPath).toEqual({
      'lynx.dtm.services.bank.url': expect.stringMatching(/must be an http\(s\) URL such as http:\/\/bank:3000, got "ftp:\/\/bank"/),
      'lynx.dtm.services.stock.grpc': expect.stringMatching(/host:port/),
      'lynx.dtm.services.stock.refresh': 'must be a positive number of seconds, got 0',
      'lynx.dtm.services.both': expect.stringMatching(/gives both url and grpc: give one/),
      'lynx.dtm.services.none': expect.stringMatching(/says neither where the service is/),
      'lynx.dtm.services.1bad': expect.stringMatching(/service names must be a letter then/),
      'lynx.dtm.services.typo.ulr': expect.stringMatching(/unknown key; did you mean "url"\?/),
      'lynx.dtm.services.typo': expect.stringMatching(/says neither/),
    });
  });

  it('refuses credentials in a service url (fetch refuses such URLs), with its path and without printing them, inline too', () => {
    const file = yamlFile('lynx:\n  dtm:\n    services:\n      bank:\n        url: "http://user:s3cr3tPW@bank:3000"\n      stock:\n        url: "http://:s3cr3tPW@stock:3000"\n');
    const problems = problemsOf({ configFile: file });
    expect(problems).toEqual([
      { path: 'lynx.dtm.services.bank.url', message: expect.stringMatching(/^must not hold credentials \(user:password@\): they are not supported here.*got "http:\/\/\*\*\*@bank:3000"$/) },
      { path: 'lynx.dtm.services.stock.url', message: expect.stringContaining('must not hold credentials') },
    ]);
    expect(JSON.stringify(problems)).not.toContain('s3cr3tPW');
    expect(problemsOf({ config: { services: { bank: { url: 'http://user@bank:3000' } } } })).toEqual([{ path: 'config.services.bank.url', message: expect.stringContaining('must not hold credentials') }]);
  });

  it('refuses services that are not a mapping, inline too (camelCase path)', () => {
    expect(problemsOf({ config: { services: ['bank'] as never } })).toEqual([{ path: 'config.services', message: expect.stringMatching(/must be a mapping of service names/) }]);
  });
});

describe('ranges Node and DTM can honour', () => {
  it.each<[string, unknown, RegExp]>([
    ['timeout', 3_000_000, /^must be from 0\.001 to 2147483\.647 seconds \(Node's timers stop at 2147483647 ms\), got 3000000$/],
    ['timeout', 0.0004, /^must be from 0\.001 to 2147483\.647 seconds .*got 0\.0004$/],
    ['retryInterval', 1e20, /^must be from 1 to 2147483647 seconds \(DTM's SQL stores keep its intervals in 32-bit integers\), got 100000000000000000000$/],
    ['transactionTimeout', 2_147_483_648, /^must be from 0 to 2147483647 seconds .*got 2147483648$/],
    ['sagaTimeout', -1, /^must be from 0 to 2147483647 seconds .*got -1$/],
    ['sagaTimeout', 1.5, /^must be a whole number of seconds \(DTM stores integers\), got 1\.5$/],
    ['retryInterval', 0, /^must be a positive number of seconds, got 0$/],
    ['branchTimeout', 2_147_484, /^must be from 1 to 2147483 seconds \(Node's timers stop at 2147483647 ms\), got 2147484$/],
    ['maxAnswerBytes', 1000, /^must be from 65536 to 1073741824 bytes .*got 1000$/],
    ['maxAnswerBytes', 100_000.5, /^must be a whole number of bytes, got 100000\.5$/],
    ['maxAnswerBytes', '8MiB', /^must be a number of bytes, got "8MiB"$/],
  ])('refuses %s: %p, saying the range and why', (key, value, message) => {
    expect(problemsOf({ config: { [key]: value } as never })).toEqual([{ path: `config.${key}`, message: expect.stringMatching(message) }]);
  });

  it('accepts both ends of every range', () => {
    const top = { timeout: 2_147_483.647, retryInterval: 2_147_483_647, transactionTimeout: 2_147_483_647, sagaTimeout: 2_147_483_647, branchTimeout: 2_147_483, maxAnswerBytes: 1024 ** 3 };
    expect(resolveDtmConfig({ config: top }, {})).toMatchObject(top);
    const bottom = { timeout: 0.001, retryInterval: 1, transactionTimeout: 0, sagaTimeout: 0, branchTimeout: 1, maxAnswerBytes: 65_536 };
    expect(resolveDtmConfig({ config: bottom }, {})).toMatchObject(bottom);
  });

  it('reports every out-of-range YAML value in the one DtmConfigError, with its YAML path', () => {
    const file = yamlFile('lynx:\n  dtm:\n    timeout: 3000000\n    retry_interval: 1e20\n    branch_timeout: 2147484\n    max_answer_bytes: 10\n');
    const problems = problemsOf({ configFile: file });
    expect(problems.map((p) => p.path)).toEqual(['lynx.dtm.timeout', 'lynx.dtm.retry_interval', 'lynx.dtm.branch_timeout', 'lynx.dtm.max_answer_bytes']);
    expect(problems.every((p) => /must be from \S+ to \S+ (seconds|bytes) \(/.test(p.message))).toBe(true);
  });
});

describe('URLs the module appends paths to', () => {
  it('refuses a query or a fragment in server_url and app_url, without printing them', () => {
    const file = yamlFile('lynx:\n  dtm:\n    server_url: "http://dtm:36789/api/dtmsvr?token=S3CR3T"\n    app_url: "http://orders:3000/#S3CR3T"\n');
    const problems = problemsOf({ configFile: file });
    expect(problems).toEqual([
      { path: 'lynx.dtm.server_url', message: expect.stringMatching(/^must not have a query \(\?\.\.\.\) or fragment \(#\.\.\.\).*got "http:\/\/dtm:36789\/api\/dtmsvr\?…"$/) },
      { path: 'lynx.dtm.app_url', message: expect.stringMatching(/got "http:\/\/orders:3000\/#…"$/) },
    ]);
    expect(JSON.stringify(problems)).not.toContain('S3CR3T');
  });

  it('refuses spaces and control characters (which new URL() would silently drop)', () => {
    const problems = problemsOf({ config: { serverUrl: 'http://dtm:36789/api/dtmsvr\n', appUrl: 'http://orders:3000/ x' } });
    expect(problems).toEqual([
      { path: 'config.serverUrl', message: expect.stringMatching(/^must not contain spaces or control characters \(check the quoting\), got "http:/) },
      { path: 'config.appUrl', message: expect.stringMatching(/^must not contain spaces or control characters/) },
    ]);
  });
});

describe('YAML aliases', () => {
  /** A "billion laughs" of `levels` levels of 10: 10^levels values once expanded, in under 2 KB. */
  function aliasBomb(levels: number, where: 'section' | 'key'): string {
    const lines = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'];
    for (let i = 1; i < levels; i++) lines.push(`x${i}: &x${i} [${Array.from({ length: 10 }, () => `*x${i - 1}`).join(', ')}]`);
    if (where === 'key') return `bombs:\n${lines.map((l) => `  ${l}`).join('\n')}\nlynx:\n  dtm:\n    pass_through_headers: *x${levels - 1}\n`;
    return `lynx:\n  dtm:\n${lines.map((l) => `    ${l}`).join('\n')}\n`;
  }

  it.each(['section', 'key'] as const)('an alias bomb in the %s fails fast with a DtmConfigError, not a hang', (where) => {
    const text = aliasBomb(10, where);
    expect(text.length).toBeLessThan(2048);
    const started = performance.now();
    const problems = problemsOf({ configFile: yamlFile(text) });
    const elapsed = performance.now() - started;
    expect(problems).toEqual([{ path: 'lynx.dtm', message: expect.stringContaining('expands to more than 10000 values through its YAML aliases') }]);
    // the bound stops it (the message above); unbounded, 10 levels of 10 aliases would expand to 10^10 values.
    // A generous limit on a busy machine: it takes milliseconds, and a hang would take hours
    expect(elapsed).toBeLessThan(1000);
  });

  it('a value that contains itself (a recursive alias) is a DtmConfigError naming where, not a RangeError', () => {
    const section = problemsOf({ configFile: yamlFile('lynx:\n  dtm: &d\n    server_url: "http://dtm:36789/api/dtmsvr"\n    again: *d\n') });
    expect(section).toEqual([{ path: 'lynx.dtm.again', message: expect.stringContaining('contains itself through a YAML alias') }]);
    const list = problemsOf({ configFile: yamlFile('lynx:\n  dtm:\n    pass_through_headers: &h [X-A, *h]\n') });
    expect(list).toEqual([{ path: 'lynx.dtm.pass_through_headers[1]', message: expect.stringContaining('contains itself') }]);
  });

  it('ordinary aliases (one value used twice) still work', () => {
    const file = yamlFile('common:\n  headers: &h [X-Tenant, X-Request-ID]\nlynx:\n  dtm:\n    pass_through_headers: *h\n    barrier_table: &t app.barrier\n');
    expect(resolveDtmConfig({ configFile: file }, {})).toMatchObject({ passThroughHeaders: ['x-tenant', 'x-request-id'], barrierTable: 'app.barrier' });
  });

  it('merge keys (<<: *defaults, as Go yaml.v3 reads them) apply shared defaults; a key given directly wins, wherever it is written', () => {
    const file = yamlFile(
      [
        'defaults: &defaults',
        '  timeout: 7',
        '  retry_interval: 3',
        '  branch_timeout: 9',
        'other: &other',
        '  branch_timeout: 11',
        '  saga_timeout: 5',
        'lynx:',
        '  dtm:',
        '    branch_timeout: 4',
        '    <<: [*defaults, *other]',
        '    server_url: http://dtm:36789/api/dtmsvr',
        '    retry_interval: 2',
        '',
      ].join('\n'),
    );
    // the first mapping of a merge list wins over the later ones (YAML merge semantics)
    expect(resolveDtmConfig({ configFile: file }, {})).toMatchObject({ timeout: 7, retryInterval: 2, branchTimeout: 4, sagaTimeout: 5, serverUrl: 'http://dtm:36789/api/dtmsvr' });
    const merged = yamlFile('defaults: &defaults\n  timeout: 7\n  retry_interval: 3\nlynx:\n  dtm:\n    <<: *defaults\n    server_url: http://dtm:36789/api/dtmsvr\n');
    expect(resolveDtmConfig({ configFile: merged }, {})).toMatchObject({ timeout: 7, retryInterval: 3, serverUrl: 'http://dtm:36789/api/dtmsvr' });
  });

  it('merged keys are checked as the others are (with their lynx.dtm path); a key written twice is still refused', () => {
    const file = yamlFile('defaults: &defaults\n  timeout: -1\n  retry_intervall: 3\nlynx:\n  dtm:\n    <<: *defaults\n');
    expect(problemsOf({ configFile: file })).toEqual([
      { path: 'lynx.dtm.timeout', message: 'must be a positive number of seconds, got -1' },
      { path: 'lynx.dtm.retry_intervall', message: expect.stringContaining('did you mean "retry_interval"?') },
    ]);
    const twice = problemsOf({ configFile: yamlFile('lynx:\n  dtm:\n    timeout: 1\n    timeout: 2\n') });
    expect(twice).toEqual([{ path: 'configFile', message: expect.stringMatching(/YAML syntax error .* at line 4, column 5: duplicated mapping key/) }]);
    expect(problemsOf({ configFile: yamlFile('lynx:\n  dtm:\n    <<: 5\n') })).toEqual([{ path: 'configFile', message: expect.stringContaining('cannot merge mappings') }]);
  });

  it('merge keys are bounded: 10 merges of a 2000-key mapping are refused fast, not expanded', () => {
    const keys = Array.from({ length: 2000 }, (_, i) => `k${i}: 1`).join(', ');
    const text = `d: &d {${keys}}\n${Array.from({ length: 10 }, (_, i) => `x${i}:\n  <<: *d\n`).join('')}lynx:\n  dtm: {}\n`;
    const started = performance.now();
    expect(problemsOf({ configFile: yamlFile(text) })).toEqual([{ path: 'configFile', message: expect.stringContaining('merge keys exceeded maxTotalMergeKeys (10000)') }]);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('an environment variable is read as one value: aliases in it are not expanded', () => {
    const file = yamlFile('lynx:\n  dtm:\n    pass_through_headers: ${HEADERS}\n');
    const problems = problemsOf({ configFile: file }, { HEADERS: '[&a X-A, *a]' });
    expect(problems).toEqual([{ path: 'lynx.dtm.pass_through_headers', message: expect.stringContaining('got "[&a X-A, *a]"') }]);
    expect(resolveDtmConfig({ configFile: file }, { HEADERS: '[X-A, X-B]' }).passThroughHeaders).toEqual(['x-a', 'x-b']);
  });
});

describe('configFile that cannot be read', () => {
  it('a directory: DtmConfigError naming the path (not a raw EISDIR)', () => {
    const problems = problemsOf({ configFile: dir });
    expect(problems).toEqual([{ path: 'configFile', message: expect.stringContaining(`(${dir}) is a directory; point configFile at the YAML file`) }]);
  });

  it('a path through a file (ENOTDIR) is reported as not found', () => {
    const file = yamlFile('lynx:\n  dtm: {}\n');
    const problems = problemsOf({ configFile: join(file, 'config.yaml') });
    expect(problems).toEqual([{ path: 'configFile', message: expect.stringContaining(`not found (looked at ${join(file, 'config.yaml')})`) }]);
  });

  it('a named pipe is refused without being opened (it would block start-up)', () => {
    const fifo = join(dir, 'config.fifo');
    execFileSync('mkfifo', [fifo]);
    const started = performance.now();
    expect(problemsOf({ configFile: fifo })).toEqual([{ path: 'configFile', message: expect.stringContaining('is not a regular file') }]);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('a file over 1 MiB is refused unread', () => {
    const big = join(dir, 'big.yaml');
    writeFileSync(big, '');
    truncateSync(big, 2 * 1024 * 1024);
    expect(problemsOf({ configFile: big })).toEqual([{ path: 'configFile', message: expect.stringContaining('has 2097152 bytes, over the 1048576') }]);
  });

  it('configFile that is not a path', () => {
    expect(problemsOf({ configFile: 42 as never })).toEqual([{ path: 'configFile', message: 'must be the path of a YAML file, got number 42' }]);
  });

  it('a file without read permission: DtmConfigError "permission denied" naming the path', () => {
    const locked = join(dir, 'locked');
    mkdirSync(locked, { mode: 0o755 });
    chmodSync(dir, 0o755); // mkdtemp makes it 0700: another user must be able to walk to the file
    const file = join(locked, 'config.yaml');
    writeFileSync(file, 'lynx:\n  dtm: {}\n');
    chmodSync(file, 0o000);
    let problems: DtmConfigProblem[];
    if (process.getuid?.() === 0) {
      // root reads any file: resolve the configuration in a child process running as nobody, with the built library (dist/cjs)
      const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
      const library = pathToFileURL(join(root, 'dist', 'cjs', 'config', 'resolve-dtm-config.js')).href;
      const script = `import(${JSON.stringify(library)}).then(({ resolveDtmConfig }) => {
        try { resolveDtmConfig({ configFile: ${JSON.stringify(file)} }, {}); console.log('null'); }
        catch (e) { console.log(JSON.stringify(e.problems ?? String(e))); }
      });`;
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', cwd: root });
      expect(child.error).toBeUndefined(); // nobody must be able to execute process.execPath
      expect(child.stderr).toBe('');
      problems = JSON.parse(child.stdout) as DtmConfigProblem[];
    } else {
      problems = problemsOf({ configFile: file });
    }
    expect(problems).toEqual([{ path: 'configFile', message: `file ${JSON.stringify(file)} (${file}) cannot be read: permission denied; point configFile at the YAML file holding the lynx.dtm section` }]);
  });
});

describe('config errors never print credentials', () => {
  const secrets = ['S3CR3T-a', 'S3CR3T-b', 'S3CR3T-c', 'S3CR3T-d', 'S3CR3T-e', 'S3CR3T-f', 'S3CR3T-g', 'S3CR3T-h'];

  it('whatever the characters of the password and wherever the URL is', () => {
    const file = yamlFile(`
lynx:
  dtm:
    server_url: "ftp://user:p@${secrets[0]}@dtm:36789/api"
    app_url: "see http://user:pa:${secrets[1]}@orders:3000 for details"
    grpc_server: "user:${secrets[2]}@dtm:36790"
    pass_through_headers: ["X-A", "http://u:${secrets[3]}@h/x"]
    barrier_table: { primary: "http://u:pa/${secrets[4]}@db/x", other: ["http://u:pa ${secrets[5]}@db"] }
    "http://admin:${secrets[6]}@dtm": 1
    timeout: "http://u:1?${secrets[7]}@dtm"
`);
    const error = configErrorOf({ configFile: file });
    const printed = inspect(error, { depth: 20 }) + JSON.stringify(error.problems);
    for (const secret of secrets) expect(printed).not.toContain(secret);
    const byPath = Object.fromEntries((error as DtmConfigError).problems.map((p) => [p.path, p.message]));
    // what is left still helps to find the value
    expect(byPath['lynx.dtm.server_url']).toContain('got "ftp://***@dtm:36789/api"');
    expect(byPath['lynx.dtm.grpc_server']).toContain('got "***@dtm:36790"');
    expect(byPath['lynx.dtm.barrier_table']).toMatch(/got a mapping \("primary": "http:\/\/\*\*\*@db\/x", "other": a list \("http:\/\/\*\*\*@db"\)\)/);
    expect(Object.keys(byPath)).toContain('lynx.dtm.http://***@dtm');
  });

  it('inline config the same way, and values are cut to 200 characters', () => {
    const problems = problemsOf({ config: { serverUrl: `ftp://u:${'x'.repeat(300)}@dtm`, appUrl: `ftp://h/${'y'.repeat(300)}` } });
    expect(problems[0].message).toContain('got "ftp://***@dtm"');
    expect(problems[1].message).toMatch(/got "ftp:\/\/h\/y{192}…"$/);
  });
});
