// DTM's keys of an HTTP branch call, read by the module from the URL once per request.
import { parse } from 'node:querystring';
import { describe, expect, it } from '@jest/globals';
import { parseBranchQuery } from '../../lib/branches/http/http-branch.transport.js';

const KEYS = ['gid', 'trans_type', 'branch_id', 'op', 'dtm', 'phase2_url'];

describe('parseBranchQuery', () => {
  it("reads DTM's keys as Node's query parser does (form decoding, repeated keys as lists), and no other key", () => {
    const queries = [
      'branch_id=01&dtm=http%3A%2F%2Flocalhost%3A36789%2Fapi%2Fdtmsvr&gid=Abc123&op=action&trans_type=saga',
      'gid=a+b&op=compensate&trans_type=saga&branch_id=',
      'gid=x&gid=y&op=action&trans_type=saga&branch_id=01',
      'gid&op=&trans_type=tcc&branch_id=01-tok',
      'phase2_url=http%3A%2F%2Fa%2Fb%3Fc%3Dd&gid=%E2%82%AC&op=try&trans_type=tcc&branch_id=01&other=1&__proto__=x',
      'g%69d=encoded-key&op=action&trans_type=saga&branch_id=01',
      '&&gid=1&&op=action&',
      '',
    ];
    for (const query of queries) {
      const node = parse(query);
      const expected = Object.fromEntries(KEYS.filter((k) => node[k] !== undefined).map((k) => [k, node[k]]));
      expect([query, { ...parseBranchQuery(query) }]).toEqual([query, expected]);
    }
  });

  it("gives every query one shape, DTM's six keys, unset unless given (no dictionary object per call: the middleware reads each branch call's query)", () => {
    for (const query of ['', 'gid=a&op=action&trans_type=saga&branch_id=01', 'op=try&other=1&__proto__=x&dtm=d&phase2_url=p']) {
      const keys = parseBranchQuery(query);
      expect([query, Object.keys(keys)]).toEqual([query, KEYS]);
      expect(Object.getPrototypeOf(keys)).toBe(Object.prototype);
    }
    expect(parseBranchQuery('op=try&other=1')).toEqual({ op: 'try' }); // toEqual leaves out the unset ones
  });

  it('keeps malformed escapes as they are', () => {
    expect(parseBranchQuery('gid=%E2%82&op=%zz')).toEqual(Object.assign(Object.create(null), { gid: '%E2%82', op: '%zz' }));
  });
});
