// The README's main command stays working: the demo (compiled by scripts/run-jest.mjs) runs its
// ten transactions against its own DTM server and databases and prints them as expected.
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from '@jest/globals';

const root = resolve(import.meta.dirname, '..', '..');

describe('npm run demo', () => {
  it('runs every mode against the sample app and prints what DTM recorded', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [join(root, '.build', 'sample-app', 'demo.js')], {
      cwd: root,
      env: withoutDemoSettings(process.env),
      timeout: 120_000,
    });
    const rows = stdout.split('\n').filter((line) => /^(saga|tcc|msg|xa|workflow) /.test(line));
    const summary = rows.map((line) => {
      const cells = line.split(/\s{2,}/);
      return `${cells[0]} | ${cells[1]} | ${cells[3]} | ${cells[cells.length - 1]}`;
    });
    expect(summary).toEqual([
      'saga | transfer 30 alice -> bob | succeed | alice 100, bob 0 -> alice 70, bob 30',
      'saga | checkout 2 widgets, ship to atlantis | failed | stock 10, carol 100, shipped 0 -> stock 10, carol 100, shipped 0',
      'saga | checkout -1 widgets (the contract refuses it) | failed | stock 10, carol 100, shipped 0 -> stock 10, carol 100, shipped 0',
      'tcc | reserve 1 widget, pay 25 | succeed | stock 10+0 reserved, carol 100+0 frozen -> stock 9+0 reserved, carol 75+0 frozen',
      'tcc | reserve 2 widgets, pay 500 | failed | stock 9+0 reserved, carol 75+0 frozen -> stock 9+0 reserved, carol 75+0 frozen',
      'msg | order placed -> shipping told | succeed | purchases 0, shipped 0 -> purchases 1, shipped 1',
      'xa | transfer 20 alice -> bob | succeed | alice 70, bob 30 -> alice 50, bob 50',
      'xa | transfer 20 alice -> mallory (no such account at B) | failed | alice 50, bob 50 -> alice 50, bob 50',
      'workflow | transfer 10 alice -> bob | succeed | alice 50, bob 50 -> alice 40, bob 60',
      'workflow | transfer 500 alice -> bob (too much) | failed | alice 40, bob 60 -> alice 40, bob 60',
    ]);
    expect(stdout).toContain('(v1.19.0, started for the demo)');
  });

  it('documents its options in --help', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [join(root, '.build', 'sample-app', 'demo.js'), '--help'], { cwd: root });
    for (const option of ['--dtm-url', '--pg-url', '--mysql-url', 'DTM_SERVER_URL', 'PG_URL', 'MYSQL_URL']) expect(stdout).toContain(option);
  });
});

/** The environment without the variables that would make the demo use other servers. */
function withoutDemoSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { DTM_SERVER_URL: _dtm, PG_URL: _pg, MYSQL_URL: _my, ...rest } = env;
  return rest;
}
