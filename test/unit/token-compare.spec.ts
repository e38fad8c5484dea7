// A branch call's token is compared with the MAC it must be by node:crypto's timingSafeEqual, once per
// accepted key whatever the token holds: no comparison of the secret MAC that stops where they differ.
import * as realCrypto from 'node:crypto';
import { describe, expect, it, jest } from '@jest/globals';

/** The byte pairs timingSafeEqual was given. */
const compared: [Buffer, Buffer][] = [];
jest.unstable_mockModule('node:crypto', () => ({
  ...realCrypto,
  timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
    // copies: the module reuses its buffers
    compared.push([Buffer.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)), Buffer.from(new Uint8Array(b.buffer, b.byteOffset, b.byteLength))]);
    return realCrypto.timingSafeEqual(a, b);
  },
}));
const { BranchAuth } = await import('../../lib/auth/branch-auth.js');

const KEY_A = 'a'.repeat(40);
const KEY_B = 'b'.repeat(40);
const call = { channel: 'dtm' as const, gid: 'g1', transType: 'saga', branchId: '01', op: 'action', target: '/api/deposit', payload: '{"amount":5}' };

describe('the comparison of a token', () => {
  it('is timingSafeEqual of its 16 bytes and the MAC, for every accepted key, whether the token is right, wrong at its first character or at its last', () => {
    const auth = new BranchAuth([KEY_A, KEY_B]);
    const token = auth.sign(call);
    const mac = realCrypto.createHmac('sha256', KEY_A).update('nestjs-dtm/2\ndtm\n2:g1\n4:saga\n2:01\n6:action\n12:/api/deposit\n' + call.payload).digest().subarray(0, 16);
    const flip = (at: number) => token.slice(0, at) + (token[at] === 'A' ? 'Q' : 'A') + token.slice(at + 1);
    for (const [given, expected] of [
      [token, true],
      [flip(0), false],
      [flip(20), false],
      [flip(21), false],
    ] as const) {
      compared.length = 0;
      expect(auth.verify(call, given)).toBe(expected);
      // one comparison per key (the first key's match does not spare the second), each of 16 bytes
      expect(compared).toHaveLength(2);
      for (const [a, b] of compared) expect([a.length, b.length]).toEqual([16, 16]);
      // the first key's: the token's bytes against its MAC
      expect(compared[0]!.map((b) => b.toString('base64url'))).toEqual(expect.arrayContaining([given, mac.toString('base64url')]));
    }
  });

  it('refuses a token of another form before any comparison: another length, a character outside base64url, or a last character with bits the MAC does not have', () => {
    const auth = new BranchAuth([KEY_A]);
    const token = auth.sign(call);
    // the last of 22 characters carries the MAC's last 2 bits: its other 4 are zero in a token the module made
    const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(token[21]!);
    const offBits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[last | 1]!;
    for (const given of [token.slice(0, 21), `${token}A`, `${token.slice(0, 5)}+${token.slice(6)}`, `${token.slice(0, 5)}é${token.slice(6)}`, `${token.slice(0, 21)}${offBits}`]) {
      compared.length = 0;
      expect(auth.verify(call, given)).toBe(false);
      expect(compared).toEqual([]);
    }
  });
});
