// The DTM server a branch call names (its `dtm` query value, or dtm-dtm metadata over gRPC): the
// module never talks to it, but logs it once per name. The caller chooses the name: what the client
// keeps of it and what the warning shows must stay bounded and on one line.
import { describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { DtmClient, resolveDtmConfig, type BranchInfo } from 'nestjs-dtm';
import { RecordingLogger } from '../support/recording-logger.js';

const config = resolveDtmConfig({ config: { serverUrl: 'http://127.0.0.1:9/api/dtmsvr' } }, {});

/** A TCC Try call naming `dtm` as its DTM server. */
function tryCall(dtm: string): BranchInfo {
  return { gid: 'g-foreign', transType: 'tcc', branchId: '01', op: 'try', dtm, headers: {} };
}

/** The warning lines logged while `run` runs. */
function warnings(run: () => void): string[] {
  const logger = new RecordingLogger();
  Logger.overrideLogger(logger);
  try {
    run();
  } finally {
    Logger.overrideLogger(false);
    Logger.overrideLogger(new Logger());
  }
  return logger.lines.filter((l) => l.startsWith('warn '));
}

describe('the DTM server a branch call names', () => {
  it('is kept and shown cut to 200 characters, however long the caller made it', () => {
    const client = new DtmClient(config);
    const lines = warnings(() => {
      for (let i = 0; i < 120; i++) client.tccFromBranch(tryCall(`http://other-${String(i).padStart(3, '0')}.example/${'p'.repeat(16 * 1024)}`));
    });
    expect(lines).toHaveLength(100);
    const shown = `"http://other-000.example/${'p'.repeat(200 - 'http://other-000.example/'.length)}…"`;
    expect(lines[0]).toContain(`a branch call named ${shown} as its DTM server`);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(1000);
    // what the client keeps between calls: 100 names of at most 201 characters, not 100 of 16 KiB
    const kept = [...(client as unknown as { foreignDtm: Set<string> }).foreignDtm];
    expect(kept).toHaveLength(100);
    expect(Math.max(...kept.map((k) => k.length))).toBe(201);
  });

  it('is shown escaped (a CR / LF cannot forge a line) and without its credentials', () => {
    const client = new DtmClient(config);
    const lines = warnings(() => client.tccFromBranch(tryCall('http://admin:s3cr3t@evil.example/api\r\nwarn forged line')));
    expect(lines).toEqual([expect.stringContaining('a branch call named "http://***@evil.example/api\\r\\nwarn forged line" as its DTM server')]);
    expect(lines.join('\n')).not.toContain('s3cr3t');
    expect(lines[0]).not.toMatch(/[\r\n]/);
  });

  it('is redacted in linear time (a name of 16 KiB, scheme characters up to an @, took 0.2 s each), and shown with NEL, U+2028 and C1 controls escaped', () => {
    const client = new DtmClient(config);
    const started = Date.now();
    const lines = warnings(() => {
      for (let i = 0; i < 40; i++) client.tccFromBranch(tryCall(`h${i}${'a1.b-'.repeat(3300)}@evil.example:36790`));
    });
    expect(Date.now() - started).toBeLessThan(1500);
    expect(lines).toHaveLength(40);
    expect(lines[0]).toContain('a branch call named "***@evil.example:36790" as its DTM server');
    const escaped = warnings(() => client.tccFromBranch(tryCall('http://evil.example/\u0085\u2028\u2029\u009b31m')));
    expect(escaped).toEqual([expect.stringContaining('a branch call named "http://evil.example/\\u0085\\u2028\\u2029\\u009b31m" as its DTM server')]);
  });

  it('the configured server, with trailing slashes, is not foreign; a long run of / not at the end is read in linear time', () => {
    const client = new DtmClient(config);
    expect(warnings(() => client.tccFromBranch(tryCall('http://127.0.0.1:9/api/dtmsvr//')))).toEqual([]);
    // /\/+$/ took quadratic time on such a name (some 90 ms per 16 KiB call, twice per call)
    const started = Date.now();
    const lines = warnings(() => {
      for (let i = 0; i < 40; i++) client.tccFromBranch(tryCall(`http://other.example/${i}${'/'.repeat(16 * 1024)}x`));
    });
    expect(Date.now() - started).toBeLessThan(1500);
    expect(lines).toHaveLength(40);
  });
});
