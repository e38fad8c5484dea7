// testRedis (test/support/redis-client.ts), the one way the tests make an ioredis client: its command
// timeout ends a command a Redis that accepts and never answers holds, with 'Command timed out',
// where ioredis alone waits for ever (the test then held to jest's 60 s timeout, nothing naming Redis).
import { describe, expect, it, jest } from '@jest/globals';
import { testRedis, TEST_REDIS_COMMAND_TIMEOUT_MS } from '../support/redis-client.js';
import { startTrap } from '../support/trap.js';

describe('testRedis', () => {
  it("a command to a Redis that accepts and never answers fails with 'Command timed out' at the client's timeout", async () => {
    const silent = await startTrap({ hold: true });
    const redis = testRedis(`redis://${silent.address}`, { commandTimeout: 300 });
    try {
      const started = performance.now();
      const outcome = await redis.get('k').then(
        (v) => `answered ${String(v)}`,
        (e: unknown) => (e as Error).message,
      );
      const ms = performance.now() - started;
      expect(outcome).toBe('Command timed out');
      expect(ms).toBeGreaterThanOrEqual(250);
      expect(ms).toBeLessThan(2_000);
      expect(silent.connections).toBe(1); // it did connect: the server, not the connection, was silent
    } finally {
      redis.disconnect();
      await silent.close();
    }
  });

  it("with no timeout passed, the command fails at the tests' 10 s, not before (jest's clock: the connection is real)", async () => {
    const silent = await startTrap({ hold: true });
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    const redis = testRedis(`redis://${silent.address}`);
    try {
      let outcome = 'waiting';
      void redis.get('k').then(
        (v) => (outcome = `answered ${String(v)}`),
        (e: unknown) => (outcome = (e as Error).message),
      );
      // connected to the silent server (ioredis's ready check, an INFO, sent and never answered)
      for (let i = 0; i < 1_000 && !silent.received.includes('INFO'); i++) await new Promise((resolve) => setImmediate(resolve));
      expect([redis.status, silent.received.includes('INFO')]).toEqual(['connect', true]);
      await jest.advanceTimersByTimeAsync(TEST_REDIS_COMMAND_TIMEOUT_MS - 1);
      expect(outcome).toBe('waiting');
      await jest.advanceTimersByTimeAsync(1);
      for (let i = 0; i < 100 && outcome === 'waiting'; i++) await new Promise((resolve) => setImmediate(resolve));
      expect(outcome).toBe('Command timed out');
    } finally {
      jest.useRealTimers();
      redis.disconnect();
      await silent.close();
    }
  });

  it("gives every client the tests' command timeout unless another is passed; commandTimeout: undefined keeps it", () => {
    const clients = [testRedis('redis://127.0.0.1:1', { lazyConnect: true }), testRedis('redis://127.0.0.1:1', { lazyConnect: true, commandTimeout: undefined }), testRedis('redis://127.0.0.1:1', { lazyConnect: true, commandTimeout: 500 })];
    try {
      expect(clients.map((c) => c.options.commandTimeout)).toEqual([TEST_REDIS_COMMAND_TIMEOUT_MS, TEST_REDIS_COMMAND_TIMEOUT_MS, 500]);
      expect(TEST_REDIS_COMMAND_TIMEOUT_MS).toBe(10_000);
    } finally {
      for (const c of clients) c.disconnect();
    }
  });
});
