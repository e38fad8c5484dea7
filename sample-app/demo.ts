// `npm run demo`: starts a DTM server (the test harness's code) unless one is given, starts the
// sample app (which uses nestjs-dtm as any app would), runs a saga transfer and prints what DTM recorded.
import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { NestFactory } from '@nestjs/core';
import type { FinalResult } from 'nestjs-dtm';
import { freePort } from '../test/support/services/process.js';
import { startStack, type Stack } from '../test/support/services/stack.js';
import { AppModule } from './src/app.module.js';
import { BankService } from './src/bank.service.js';
import { TransferService } from './src/transfer.service.js';

const HELP = `Usage: npm run demo [-- options]

Starts a DTM server v1.19.0 and the sample app (sample-app/), runs DTM transactions against it
and prints, per transaction, the gid, the final status and the branch statuses DTM recorded.

Options:
  --dtm-url <url>   use this running DTM server (its server_url, e.g. http://localhost:36789/api/dtmsvr)
                    instead of starting one; also read from DTM_SERVER_URL
  --help            show this help
`;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'dtm-url': { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  let stack: Stack | undefined;
  const given = values['dtm-url'] ?? process.env.DTM_SERVER_URL;
  if (given) {
    console.log(`using the DTM server at ${given}`);
  } else {
    stack = await startStack({ postgres: false, mariadb: false, redis: false });
    console.log(`DTM server ${stack.info.dtm.version} started at ${stack.info.dtm.serverUrl} (log: ${stack.info.dtm.logFile})`);
  }
  // read by sample-app/config.yaml
  const port = await freePort();
  process.env.DTM_SERVER_URL = given ?? stack!.info.dtm.serverUrl;
  process.env.APP_URL = `http://127.0.0.1:${port}`;
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  try {
    await app.listen(port, '127.0.0.1');
    console.log(`sample app listening at ${process.env.APP_URL}\n`);
    const bank = app.get(BankService);
    const transfers = app.get(TransferService);

    const rows: Record<string, string>[] = [];
    const run = async (what: string, action: () => Promise<FinalResult>) => {
      const before = bank.snapshot();
      const final = await action();
      rows.push({
        mode: 'saga',
        what,
        gid: final.gid,
        status: final.status,
        branches: final.branches.map((b) => b.status).join(','),
        balances: `${balances(before)} -> ${balances(bank.snapshot())}`,
      });
      return final;
    };
    const ok = await run('transfer 30 alice -> bob', () => transfers.transfer({ from: 'alice', to: 'bob', amount: 30 }));
    // (a rolled-back transfer joins the demo with the sub-transaction barrier: without it, DTM's
    // compensation of the failed step would give back money that was never taken)
    printTable(rows);
    if (ok.status !== 'succeed') process.exitCode = 1;
  } finally {
    await app.close();
    await stack?.stop();
  }
}

function balances(snapshot: Record<string, number>): string {
  return Object.entries(snapshot)
    .map(([account, balance]) => `${account} ${balance}`)
    .join(', ');
}

function printTable(rows: Record<string, string>[]): void {
  const columns = Object.keys(rows[0]);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd();
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) console.log(line(columns.map((c) => row[c])));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
