// The tokens of authenticated branch calls, and their configuration (lynx.dtm.branch_auth_keys).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { createHmac, randomBytes } from 'node:crypto';
import { parse } from 'node:querystring';
import { afterAll, describe, expect, it } from '@jest/globals';
import { DtmConfigError, resolveDtmConfig } from 'nestjs-dtm';
import { BranchAuth, headersOfCall, issueProblem, signedHeaders, signedQuery, splitTccBranchId, targetPath, tokenInHeader, type SignedCall } from '../../lib/auth/branch-auth.js';

const KEY_A = 'a'.repeat(40);
const KEY_B = 'b'.repeat(40);
const call: SignedCall = { channel: 'dtm', gid: 'g1', transType: 'saga', branchId: '01', op: 'action', target: '/api/deposit', payload: '{"amount":5}' };

describe('BranchAuth', () => {
  it('a token verifies for exactly the call it was made for', () => {
    const auth = new BranchAuth([KEY_A]);
    const token = auth.sign(call);
    expect(token).toMatch(/^[\w-]{22}$/);
    expect(auth.verify(call, token)).toBe(true);
    for (const change of [{ channel: 'app' }, { gid: 'g2' }, { transType: 'msg' }, { branchId: '02' }, { op: 'compensate' }, { target: '/api/withdraw' }, { payload: '{"amount":6}' }, { payload: Buffer.from('{"amount":6}') }, { payload: undefined }] as Partial<SignedCall>[]) {
      expect(auth.verify({ ...call, ...change }, token)).toBe(false);
    }
    expect(auth.verify(call, undefined)).toBe(false);
    expect(auth.verify(call, `${token}x`)).toBe(false);
    // a different character anywhere (the last one carries only 4 bits of the MAC) is refused
    for (let i = 0; i < token.length; i++) {
      const other = token[i] === 'A' ? 'B' : 'A';
      expect(auth.verify(call, token.slice(0, i) + other + token.slice(i + 1))).toBe(false);
    }
  });

  it('is HMAC-SHA256 of the call, truncated to 128 bits (also for keys longer than the block)', () => {
    const message = 'nestjs-dtm/2\ndtm\n2:g1\n4:saga\n2:01\n6:action\n12:/api/deposit\n' + call.payload;
    for (const key of [KEY_A, 'k'.repeat(100), 'é'.repeat(40)]) {
      expect(new BranchAuth([key]).sign(call)).toBe(createHmac('sha256', key).update(message).digest().toString('base64url', 0, 16));
    }
  });

  it('writes every name after its length in UTF-16 units, whatever its characters and length', () => {
    const names = { gid: 'gé€😀'.repeat(30), transType: 'saga', branchId: '0'.repeat(1234), op: 'tränsfer', target: '/a/' + 'x'.repeat(99) };
    const odd: SignedCall = { ...call, ...names, payload: Buffer.from('{"a":"é"}') };
    const head = `nestjs-dtm/2\ndtm\n${[names.gid, names.transType, names.branchId, names.op, names.target].map((n) => `${n.length}:${n}\n`).join('')}`;
    expect(new BranchAuth([KEY_A]).sign(odd)).toBe(createHmac('sha256', KEY_A).update(head).update('{"a":"é"}').digest().toString('base64url', 0, 16));
  });

  it("its SHA-256 gives node:crypto's bytes for every message length, text or bytes, short and long", () => {
    const head = 'nestjs-dtm/2\napp\n2:g1\n4:saga\n2:01\n6:action\n2:/x\n';
    const auth = new BranchAuth([KEY_A, KEY_B]);
    const lengths = [...Array.from({ length: 300 }, (_, i) => i), 1000, 2000, 2047, 2048, 2049, 5000, 70_000];
    for (const n of lengths) {
      const bytes = randomBytes(n);
      const text = 'é€a'.repeat(n).slice(0, n);
      for (const payload of [bytes, text]) {
        const expected = createHmac('sha256', KEY_A).update(head).update(payload).digest().toString('base64url', 0, 16);
        const signed = { ...call, channel: 'app' as const, target: '/x', payload };
        expect([n, auth.sign(signed)]).toEqual([n, expected]);
        expect(auth.verify(signed, expected)).toBe(true);
      }
    }
    expect(auth.sign({ ...call, payload: '' })).toBe(auth.sign({ ...call, payload: undefined }));
    expect(auth.sign({ ...call, payload: Buffer.from('{"a":1}') })).toBe(auth.sign({ ...call, payload: '{"a":1}' }));
  });

  it('no two calls give the same message (each name after its length)', () => {
    const auth = new BranchAuth([KEY_A]);
    const a = auth.sign({ ...call, branchId: '01', op: 'action' });
    expect(auth.sign({ ...call, branchId: '01\naction', op: '' })).not.toBe(a);
    expect(auth.sign({ ...call, target: '/a\n/b', payload: 'x' })).not.toBe(auth.sign({ ...call, target: '/a', payload: '/b\nx' }));
  });

  it('rotation: the first key signs, every key verifies', () => {
    const rotating = new BranchAuth([KEY_B, KEY_A]);
    expect(rotating.verify(call, new BranchAuth([KEY_A]).sign(call))).toBe(true);
    expect(rotating.verify(call, new BranchAuth([KEY_B]).sign(call))).toBe(true);
    expect(new BranchAuth([KEY_A]).verify(call, rotating.sign(call))).toBe(false);
  });

  it('prints no key', () => {
    const auth = new BranchAuth([KEY_A, KEY_B]);
    expect(JSON.stringify({ auth })).toBe('{"auth":"BranchAuth(2 keys)"}');
    expect(inspect(auth)).toBe('BranchAuth(2 keys)');
  });

  it('reads targets, header entries and TCC branch ids', () => {
    expect(targetPath('http://bank:3000/api/deposit')).toBe('/api/deposit');
    // the query it was registered with is signed (a handler may read it), DTM's keys are not; read as the branch reads a re-encoded one
    expect(targetPath('http://bank:3000/api/deposit?x=1#top')).toBe('/api/deposit?x=1');
    expect(targetPath('http://bank:3000/api/deposit?a=b%20c&op=x&flag')).toBe('/api/deposit?a=b%20c&flag=');
    expect(targetPath('http://bank:3000/api/deposit?a=b+c&gid=g&flag=')).toBe(targetPath('http://bank:3000/api/deposit?a=b%20c&flag'));
    expect(targetPath('http://bank:3000?to=a/b')).toBe('/?to=a%2Fb');
    expect(signedQuery('gid=g&trans_type=saga&branch_id=01&op=action&dtm=http%3A%2F%2Fdtm&phase2_url=x')).toBe('');
    expect(signedQuery('account=bob&gid=g')).not.toBe(signedQuery('account=mallory&gid=g'));
    expect(signedQuery('account=bob&gid=g')).not.toBe(signedQuery('account=bob&account=bob&gid=g'));
    expect(targetPath('https://bank')).toBe('/');
    expect(targetPath('bank:50051/bank.Bank/Deposit')).toBe('/bank.Bank/Deposit');
    expect(tokenInHeader('action.01=AAA,compensate.01=BBB, msg.00=CCC', 'compensate', '01')).toBe('BBB');
    expect(tokenInHeader('action.01=AAA', 'action', '0')).toBeUndefined();
    expect(tokenInHeader('transfer.v1.00=DDD', 'transfer.v1', '00')).toBe('DDD');
    expect(tokenInHeader('xaction.01=AAA,  action.01=BBB ', 'action', '01')).toBe('BBB');
    expect(tokenInHeader('action.011=AAA,action.01x=BBB,action.0=CCC', 'action', '01')).toBeUndefined();
    expect(tokenInHeader('action.01=', 'action', '01')).toBe('');
    expect(tokenInHeader('compensate.01=AAA', 'action', '01')).toBeUndefined();
    expect(splitTccBranchId('01-abc-def')).toEqual({ prefix: '01', token: 'abc-def' });
    expect(splitTccBranchId('0102')).toEqual({ prefix: '0102' });
  });

  it("signs a query part whose escapes are malformed as it came: parsers read it apart (Express 5's node:querystring and the WHATWG URL decode the valid escapes around a bad one), so no other spelling signs the same", () => {
    // '%41%ZZ' is the value '%41%ZZ' to qs and Fastify, 'A%ZZ' to Express 5; '%2541%25ZZ' is '%41%ZZ' to all of them
    expect([parse('a=%41%ZZ').a, parse('a=%2541%25ZZ').a, new URLSearchParams('a=%41%ZZ').get('a')]).toEqual(['A%ZZ', '%41%ZZ', 'A%ZZ']);
    expect(signedQuery('a=%41%ZZ')).toBe('?a=%41%ZZ');
    expect(signedQuery('a=%2541%25ZZ')).toBe('?a=%2541%25ZZ');
    expect(signedQuery('b=%E2%82&c=%FF+%zz')).toBe('?b=%E2%82&c=%FF+%zz');
    expect([parse('c=%FF').c, parse('c=%25FF').c]).toEqual(['\uFFFD', '%FF']);
    expect(signedQuery('c=%FF')).not.toBe(signedQuery('c=%25FF'));
    // without a valid escape every parser reads the text as it is (a stray %): the same value as its well-formed spelling, signed the same
    expect([parse('a%ZZ=50%&b=1+%zz'), parse('a%25ZZ=50%25&b=1%20%25zz')].map((q) => ({ ...q }))).toEqual([{ 'a%ZZ': '50%', b: '1 %zz' }, { 'a%ZZ': '50%', b: '1 %zz' }]);
    expect(signedQuery('a%ZZ=50%&b=1+%zz')).toBe(signedQuery('a%25ZZ=50%25&b=1%20%25zz'));
    // so the app's own calls to such a target (TCC Try, XA action, workflow steps), whose query the WHATWG URL writes again with DTM's keys, sign as the target did
    const own = new URL('http://bank/credit?d=50%&n=1+%zz');
    own.searchParams.set('gid', 'g1');
    expect(own.search).toBe('?d=50%25&n=1+%25zz&gid=g1');
    expect(targetPath(own.href)).toBe(targetPath('http://bank/credit?d=50%&n=1+%zz'));
    expect(targetPath('http://bank/credit?account=%41%ZZ')).not.toBe(targetPath('http://bank/credit?account=%2541%25ZZ'));
    // well-formed spellings of one value still sign the same (every parser reads them alike)
    expect(signedQuery('a=%41+b&c')).toBe(signedQuery('a=A%20b&c='));
  });
});

describe('issueProblem: DTM\'s record created within the window of the tokens\' issue time', () => {
  const issued = '1764979200';
  const at = (seconds: number) => new Date((1764979200 + seconds) * 1000);
  it('within the window either way (clocks of the app and DTM apart, a submit retried): none; beyond it: the seconds apart', () => {
    expect(issueProblem(at(0), issued, 900)).toBeUndefined();
    expect(issueProblem(at(900), issued, 900)).toBeUndefined();
    expect(issueProblem(at(-900), issued, 900)).toBeUndefined();
    expect(issueProblem(at(901), issued, 900)).toBe(901);
    expect(issueProblem(at(-901), issued, 900)).toBe(901);
    expect(issueProblem(at(86_400), issued, 900)).toBe(86_400);
  });
  it('tokens without an issue time (an app of an older version), a record without a creation time, or a value that is no Unix time: nothing to compare', () => {
    expect(issueProblem(at(86_400), undefined, 900)).toBeUndefined();
    expect(issueProblem(undefined, issued, 900)).toBeUndefined();
    for (const bad of ['', '-5', '1e9', ' 1764979200', '17649792001234']) expect(issueProblem(at(86_400), bad, 900)).toBeUndefined();
  });
});

describe('forwarded headers in tokens', () => {
  const auth = new BranchAuth([KEY_A]);

  it('signs every branch header but trace propagation and the module\'s own: lower case, sorted, values without surrounding spaces', () => {
    const propagation = { traceparent: '00-x', tracestate: 'a=b', baggage: 'k=v', b3: '1', 'x-b3-traceid': 'a', 'uber-trace-id': 'u', 'sentry-trace': 's', 'x-datadog-trace-id': '1' };
    const signed = signedHeaders({ 'X-Tenant': ' t1\t', ...propagation, 'dtm-auth': 'action.01=x', 'x-request-id': 'r 1' });
    expect(signed).toEqual({ names: 'x-request-id,x-tenant', text: 'x-request-id:r 1\nx-tenant:t1\n' });
    expect(signedHeaders({ traceparent: '00-x', 'dtm-auth-headers': 'x' })).toBeUndefined();
    expect(signedHeaders(undefined)).toBeUndefined();
  });

  it('reads back exactly the listed headers of a call, and names what is wrong with a list', () => {
    const call = { 'x-request-id': 'r 1', 'x-tenant': ' t1 ', 'x-other': 'o' } as Record<string, string | undefined>;
    const read = (name: string) => call[name];
    expect(headersOfCall('x-request-id,x-tenant', read)).toEqual({ text: 'x-request-id:r 1\nx-tenant:t1\n', list: ['x-request-id', 'x-tenant'], values: ['r 1', ' t1 '] });
    expect(headersOfCall('x-request-id,x-zone', read)).toMatchObject({ missing: 'x-zone', text: '' });
    // a name the signing app chose is taken, though this version does not sign it (another version may)
    expect(headersOfCall('x-other', read)).toMatchObject({ text: 'x-other:o\n', list: ['x-other'] });
    expect(headersOfCall('baggage', (name) => (name === 'baggage' ? 'k=v' : undefined))).toMatchObject({ text: 'baggage:k=v\n' });
    for (const bad of ['x-tenant,x-request-id', 'x-tenant,x-tenant', 'X-Tenant', 'dtm-auth', 'dtm-auth-headers', 'x-tenant,', '', 'x tenant']) {
      expect(headersOfCall(bad, read)).toMatchObject({ bad: true, text: '', list: [] });
    }
  });

  it('a token over headers verifies only with the same headers; without any it is the token of before (nestjs-dtm/2)', () => {
    const text = signedHeaders({ 'x-tenant': 't1' })!.text;
    const token = auth.sign({ ...call, headers: text });
    expect(auth.verify({ ...call, headers: text }, token)).toBe(true);
    for (const headers of [undefined, '', 'x-tenant:t2\n', `${text}x-more:1\n`]) expect(auth.verify({ ...call, headers }, token)).toBe(false);
    // no headers: the same bytes as before headers were signed
    const plain = auth.sign(call);
    expect(auth.sign({ ...call, headers: '' })).toBe(plain);
    const message = 'nestjs-dtm/2\ndtm\n2:g1\n4:saga\n2:01\n6:action\n12:/api/deposit\n' + call.payload;
    expect(plain).toBe(createHmac('sha256', KEY_A).update(message).digest().toString('base64url', 0, 16));
    const withHeaders = 'nestjs-dtm/3\ndtm\n2:g1\n4:saga\n2:01\n6:action\n12:/api/deposit\n12:x-tenant:t1\n\n' + call.payload;
    expect(token).toBe(createHmac('sha256', KEY_A).update(withHeaders).digest().toString('base64url', 0, 16));
    // the headers' field cannot be moved into the body: another version, so no call without headers reads the same
    expect(auth.verify({ ...call, payload: `12:x-tenant:t1\n\n${call.payload}` }, token)).toBe(false);
  });
});

describe('lynx.dtm.branch_auth_keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-auth-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (text: string) => {
    const path = join(dir, `c${Math.random()}.yaml`);
    writeFileSync(path, text);
    return path;
  };

  it('takes keys from the environment; the optional second one may be unset', () => {
    const config = resolveDtmConfig({ configFile: file('lynx:\n  dtm:\n    branch_auth_keys: ["${K1}", "${K2:}"]\n') }, { K1: KEY_A });
    expect(config.branchAuthKeys?.verify(call, new BranchAuth([KEY_A]).sign(call))).toBe(true);
    expect(resolveDtmConfig({ config: { branchAuthKeys: [KEY_B] } }, {}).branchAuthKeys?.verify(call, new BranchAuth([KEY_B]).sign(call))).toBe(true);
    expect(resolveDtmConfig({}, {}).branchAuthKeys).toBeUndefined();
  });

  it('refuses short, missing or non-string keys at start-up, naming the path and never the key', () => {
    const problems = (options: Parameters<typeof resolveDtmConfig>[0], env: NodeJS.ProcessEnv = {}) => {
      try {
        resolveDtmConfig(options, env);
      } catch (err) {
        expect(err).toBeInstanceOf(DtmConfigError);
        return (err as DtmConfigError).problems.map((p) => `${p.path}: ${p.message}`);
      }
      throw new Error('expected a DtmConfigError');
    };
    const short = problems({ configFile: file('lynx:\n  dtm:\n    branch_auth_keys: ["${K1}"]\n') }, { K1: 'secret-but-short' });
    expect(short).toEqual([expect.stringContaining('lynx.dtm.branch_auth_keys: must list keys of at least 32 characters')]);
    expect(short.join()).not.toContain('secret-but-short');
    expect(problems({ configFile: file('lynx:\n  dtm:\n    branch_auth_keys: ["${K1:}"]\n') })).toEqual([expect.stringContaining('lists no key')]);
    // a required key (no default) whose variable is set but empty (docker compose's `${K1}` of an unset host
    // variable): said so, not dropped, which left the old key signing or "lists no key ... with the variable set"
    const security = 'lynx:\n  dtm:\n    branch_auth_keys: ["${K1}", "${K2:}"]\n';
    expect(problems({ configFile: file(security) }, { K1: '' })).toEqual([
      'lynx.dtm.branch_auth_keys[0]: environment variable K1 is set but empty: a key cannot be empty; set it to a key, or write ${K1:} for a key that may be left out',
      expect.stringContaining('lynx.dtm.branch_auth_keys: lists no key'),
    ]);
    expect(problems({ configFile: file(security) }, { K1: '', K2: KEY_B })).toEqual([expect.stringContaining('lynx.dtm.branch_auth_keys[0]: environment variable K1 is set but empty')]);
    expect(resolveDtmConfig({ configFile: file(security) }, { K1: KEY_A, K2: '' }).branchAuthKeys?.verify(call, new BranchAuth([KEY_A]).sign(call))).toBe(true);
    expect(problems({ config: { branchAuthKeys: [12345 as unknown as string] } })).toEqual([expect.stringContaining('#1: number (quote it)')]);
    // checking actions needs the keys: said with the path, not silently ignored
    expect(problems({ configFile: file('lynx:\n  dtm:\n    branch_auth_check_actions: true\n') })).toEqual([
      'lynx.dtm.branch_auth_check_actions: true needs branch_auth_keys: only authenticated calls can be checked; set the keys, or remove branch_auth_check_actions',
    ]);
    expect(resolveDtmConfig({ config: { branchAuthKeys: [KEY_A], branchAuthCheckActions: true } }, {}).branchAuthCheckActions).toBe(true);
    expect(resolveDtmConfig({}, {}).branchAuthCheckActions).toBe(false);
  });
});
