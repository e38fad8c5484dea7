// freeLocalPort (nestjs-dtm/testing): ports a test can listen on, taken where outgoing connections
// never take theirs (below Linux's ephemeral range), so that nothing grabs one between the check and
// the bind. The tests' freePort: none of them twice in a run.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { describe, expect, it } from '@jest/globals';
import { freeLocalPort } from 'nestjs-dtm/testing';
import { freePort, HARNESS_ENV } from '../support/services/process.js';

const listen = (port: number) =>
  new Promise<() => Promise<void>>((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(() => new Promise((done) => server.close(() => done()))));
  });

describe('freeLocalPort', () => {
  it('gives ports that can be listened on, below the ephemeral range on Linux', async () => {
    const ephemeralStart = process.platform === 'linux' ? Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) : undefined;
    for (let i = 0; i < 20; i++) {
      const port = await freeLocalPort();
      if (ephemeralStart !== undefined) expect(port).toBeLessThan(ephemeralStart);
      expect(port).toBeGreaterThan(0);
      const close = await listen(port);
      await close();
    }
  });

  it('never gives a port twice in a process: a DTM server\'s HTTP and gRPC ports, asked for one after the other, once both came out the same (its gRPC listen failed, "address already in use")', async () => {
    // 22 768 ports below Linux's range: 600 draws repeat one with a probability of 1 - e^(-600²/2/22768), over 99.9 %
    const ports: number[] = [];
    for (let i = 0; i < 600; i++) ports.push(await freeLocalPort());
    expect(new Set(ports).size).toBe(ports.length);
  });
});

describe('freePort (the tests\' harness)', () => {
  it('never gives a port another test file of the run claimed, in any jest worker: a gRPC server at a reused port was reached by the shared DTM only after its reconnect backoff (shutdown.spec, CI)', async () => {
    const run = mkdtempSync(join(tmpdir(), 'free-port-'));
    const before = process.env[HARNESS_ENV];
    process.env[HARNESS_ENV] = join(run, 'harness.json');
    try {
      // another worker's claims: nine in ten of the ports freeLocalPort draws from on Linux (or of a spread elsewhere)
      const claims = join(run, 'ports');
      mkdirSync(claims);
      const taken = new Set<number>();
      for (let port = 10_000; port < 33_000; port++) if (port % 10 !== 0) taken.add(port);
      for (const port of taken) writeFileSync(join(claims, String(port)), '');
      const given: number[] = [];
      for (let i = 0; i < 30; i++) given.push(await freePort());
      expect(given.filter((port) => taken.has(port))).toEqual([]);
      expect(new Set(given).size).toBe(given.length);
      for (const port of given) expect(existsSync(join(claims, String(port)))).toBe(true);
    } finally {
      if (before === undefined) delete process.env[HARNESS_ENV];
      else process.env[HARNESS_ENV] = before;
      rmSync(run, { recursive: true, force: true });
    }
  });
});
