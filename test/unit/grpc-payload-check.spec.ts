// The check of object payloads for gRPC branches against their request type, before protobuf
// encodes them: protobufjs's fromObject coerces a value of another kind without a word (a fraction
// in an integer truncated, "false" in a bool sent as true, a Buffer's JSON form in bytes sent as no
// bytes), so a branch would run on other data. What passes is what protobuf sends as it is.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import protoLoader from '@grpc/proto-loader';
import { GrpcCodecs } from '../../lib/transport/grpc/grpc-codecs.js';
import { refusal } from '../support/refusal.js';

const dir = mkdtempSync(join(tmpdir(), 'grpc-payload-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const protoPath = join(dir, 'kinds.proto');
writeFileSync(
  protoPath,
  `syntax = "proto3";
package kinds;
enum Color { RED = 0; BLUE = 1; }
message Inner { string s = 1; }
message All {
  int32 i32 = 1; uint32 u32 = 2; int64 i64 = 3; uint64 u64 = 4; sint64 s64 = 5;
  double d = 6; float f = 7; bool b = 8; string s = 9; bytes raw = 10; Color color = 11;
  repeated int64 many = 12; Inner inner = 13; map<string, int64> by_name = 14;
  repeated Inner inners = 15; map<string, Inner> by_inner = 16; Deep deep = 17; repeated Color colors = 18;
}
message Deep { Inner inner = 1; Deep next = 2; }
service Kinds { rpc Put(All) returns (All); }
`,
);
const loader = { longs: String, keepCase: true };
const codec = GrpcCodecs.load({ protoPath, loader }).get('/kinds.Kinds/Put')!;
const method = (protoLoader.loadSync(protoPath, loader)['kinds.Kinds'] as Record<string, { requestDeserialize(b: Buffer): Record<string, unknown> }>).Put;
const roundTrip = (value: object) => method.requestDeserialize(codec.serializeRequest(value));

describe('object payloads for gRPC branches: what protobuf would change is refused', () => {
  it.each([
    [{ i32: 1.5 }, 'field "i32" (int32) of the request type All takes a whole number within its range (a number or a string of decimal digits), got number 1.5'],
    [{ i32: 2 ** 31 }, 'got number 2147483648'],
    [{ u32: -1 }, 'field "u32" (uint32)'],
    [{ i64: '0x10' }, 'got "0x10"'],
    [{ i64: '9223372036854775808' }, 'got "9223372036854775808"'],
    [{ u64: '-1' }, 'field "u64" (uint64)'],
    [{ s64: 2 ** 53 }, 'field "s64" (sint64)'],
    [{ i64: true }, 'got boolean true'],
    [{ d: 'ten' }, 'field "d" (double) of the request type All takes a number (or a string of one), got "ten"'],
    [{ f: true }, 'field "f" (float)'],
    [{ b: 'false' }, 'field "b" (bool) of the request type All takes true or false, got "false"'],
    [{ b: 1 }, 'got number 1'],
    [{ s: ['a', 'b'] }, 'field "s" (string) of the request type All takes a string or a number, got a list'],
    [{ raw: JSON.parse(JSON.stringify(Buffer.from('hi'))) as object }, 'field "raw" (bytes) of the request type All takes bytes (a Uint8Array, a list of byte values or a base64 string), got an object'],
    [{ raw: 'not base64!' }, 'got "not base64!"'],
    [{ raw: [1, 256] }, 'got a list'],
    [{ color: { name: 'RED' } }, 'field "color" (enum kinds.Color) of the request type All takes one of RED, BLUE (or a whole number), got an object'],
    [{ many: [1, 2.5] }, 'field "many" (int64, item 1) of the request type All takes a whole number'],
    // an enum name the enum does not have would be sent as its default value (0)
    [{ color: 'GREEN' }, 'field "color" (enum kinds.Color) of the request type All takes one of RED, BLUE (or a whole number), got "GREEN"'],
    // in nested messages, their lists and maps as at the top
    [{ inner: { s: { a: 1 } } }, 'field "inner.s" (string) of the request type All takes a string or a number, got an object'],
    [{ inner: { typo: 'x' } }, 'the request type All has no field "inner.typo", which protobuf would drop: its fields (of kinds.Inner) are s'],
    [{ inners: [{ s: 'ok' }, { s: ['a'] }] }, 'field "inners[1].s" (string)'],
    [{ by_name: { a: 2.5 } }, 'field "by_name.a" (int64) of the request type All takes a whole number'],
    [{ by_inner: { k: { s: true, n: 1 } } }, 'has no field "by_inner.k.n"'],
    [{ deep: { inner: { s: [] } } }, 'field "deep.inner.s" (string)'],
    [{ colors: ['RED', 'PINK'] }, 'field "colors" (enum kinds.Color, item 1)'],
  ])('%j', (value, message) => {
    expect(() => codec.serializeRequest(value)).toThrow(message);
  });

  it('what protobuf sends as it is passes, and arrives as given', () => {
    expect(
      roundTrip({
        i32: -2147483648,
        u32: '4294967295',
        i64: '-9223372036854775808',
        u64: BigInt('18446744073709551615'),
        s64: Number.MAX_SAFE_INTEGER,
        d: '12.5',
        f: 0.5,
        b: false,
        s: 42,
        raw: 'aGk=',
        color: 'BLUE',
        many: ['1', 2, BigInt(3)],
        inner: { s: 'x' },
        by_name: { a: '7' },
        inners: [{ s: 'y' }],
        by_inner: { k: { s: 'z' } },
        deep: { next: { next: { inner: { s: 'd' } } } },
        colors: ['RED', 1, 7],
      }),
    ).toMatchObject({
      i32: -2147483648,
      u32: 4294967295,
      i64: '-9223372036854775808',
      u64: '18446744073709551615',
      s64: String(Number.MAX_SAFE_INTEGER),
      d: 12.5,
      f: 0.5,
      b: false,
      s: '42',
      raw: Buffer.from('hi'),
      color: 1,
      many: ['1', '2', '3'],
      inner: { s: 'x' },
      by_name: { a: '7' },
      inners: [{ s: 'y' }],
      by_inner: { k: { s: 'z' } },
      deep: { next: { next: { inner: { s: 'd' } } } },
      colors: [0, 1, 7], // proto3 enums are open: an unknown number is sent as it is
    });
    // null and undefined leave a field unset, as before
    expect(roundTrip({ i64: null, b: undefined, raw: new Uint8Array([1, 2]) })).toMatchObject({ raw: Buffer.from([1, 2]) });
  });
});

describe('types the request type names across packages and nesting levels', () => {
  writeFileSync(join(dir, 'other.proto'), `syntax = "proto3";
package other.sub;
message Ext { string e = 1; message Nest { int32 n = 1; } Nest nest = 2; }
`);
  const mixPath = join(dir, 'mix.proto');
  writeFileSync(
    mixPath,
    `syntax = "proto3";
package mix;
import "other.proto";
import "google/protobuf/timestamp.proto";
message Mix { other.sub.Ext ext = 1; .other.sub.Ext.Nest nest = 2; google.protobuf.Timestamp at = 3; int64 some_amount = 4; Part part = 5; message Part { int64 part_amount = 1; } }
service S { rpc Put(other.sub.Ext) returns (other.sub.Ext); rpc Mix(Mix) returns (Mix); }
`,
  );
  // the loader's defaults but longs (camelCase names), as Nest's are
  const codecs = GrpcCodecs.load({ protoPath: mixPath, loader: { longs: String, includeDirs: [dir] } });

  it.each([
    ['/mix.S/Put', { nest: { n: 1.5 } }, 'field "nest.n" (int32) of the request type Ext takes a whole number'],
    ['/mix.S/Mix', { ext: { nest: { n: 'x' } } }, 'field "ext.nest.n" (int32) of the request type Mix'],
    ['/mix.S/Mix', { nest: { m: 1 } }, 'has no field "nest.m", which protobuf would drop: its fields (of other.sub.Ext.Nest) are n'],
    ['/mix.S/Mix', { someAmount: 2.5 }, 'field "someAmount" (int64)'],
    ['/mix.S/Mix', { part: { partAmount: '12.50' } }, 'field "part.partAmount" (int64)'],
    ['/mix.S/Mix', { part: { part_amount: 1 } }, 'has no field "part.part_amount"'],
  ])('%s %j', (path, value, message) => {
    expect(() => codecs.get(path)!.serializeRequest(value)).toThrow(message);
  });

  it("an unknown key names keepCase (and the field to spell) only when it is a field's name spelt otherwise, ignoring case and underscores", () => {
    const keepCase = '(keepCase: false, the default, camelCases the .proto\'s names; true keeps them)';
    // the loader's default camelCases the .proto's names: snake_case keys are the mix-up
    expect(refusal(() => codecs.get('/mix.S/Mix')!.serializeRequest({ part: { part_amount: 1 } }))).toBe(
      `the request type Mix has no field "part.part_amount", which protobuf would drop: its fields (of mix.Mix.Part) are partAmount; spell it "partAmount", as the loader options of the protos name that field ${keepCase}`,
    );
    expect(refusal(() => codecs.get('/mix.S/Mix')!.serializeRequest({ Some_Amount: 1 }))).toContain('has no field "Some_Amount", which protobuf would drop: its fields are ext, nest, at, someAmount, part; spell it "someAmount", as the loader options');
    // keepCase: true keeps them: the camelCase key is the mix-up
    expect(refusal(() => codec.serializeRequest({ byName: { a: 1 } }))).toContain('has no field "byName", which protobuf would drop: its fields are i32, u32, i64, u64, s64, d, f, b, s, raw, color, many, inner, by_name, inners, by_inner, deep, colors; spell it "by_name", as the loader options');
    // a key that is no field's name, however spelt: no word of keepCase
    for (const [send, message] of [
      [() => codec.serializeRequest({ inner: { typo: 'x' } }), 'the request type All has no field "inner.typo", which protobuf would drop: its fields (of kinds.Inner) are s'],
      [() => codecs.get('/mix.S/Mix')!.serializeRequest({ nest: { m: 1 } }), 'the request type Mix has no field "nest.m", which protobuf would drop: its fields (of other.sub.Ext.Nest) are n'],
      [() => codecs.get('/mix.S/Mix')!.serializeRequest({ amount: 1 }), 'the request type Mix has no field "amount", which protobuf would drop: its fields are ext, nest, at, someAmount, part'],
    ] as const) {
      expect(refusal(send)).toBe(message);
    }
  });

  it('passes what protobuf sends as it is; a google.protobuf type is left to protobuf', () => {
    expect(() => codecs.get('/mix.S/Mix')!.serializeRequest({ ext: { e: 'x', nest: { n: 3 } }, nest: { n: -1 }, at: { seconds: '5', nanos: 1 }, someAmount: '7', part: { partAmount: 9 } })).not.toThrow();
  });
});
