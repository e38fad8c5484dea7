// freeLocalPort (nestjs-dtm/testing): ports a test can listen on, taken where outgoing connections
// never take theirs (below Linux's ephemeral range), so that nothing grabs one between the check and
// the bind.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, expect, it } from '@jest/globals';
import { freeLocalPort } from 'nestjs-dtm/testing';

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
