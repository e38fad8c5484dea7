// `npm run demo`: starts a DTM server (the test harness's code) unless one is given, starts the
// sample app, runs a two-step saga transfer against it and prints what DTM recorded.
import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { NestFactory } from '@nestjs/core';
import { startStack, type Stack } from '../test/support/services/stack.js';
import { AppModule } from './src/app.module.js';
import { BankService } from './src/bank.service.js';

const HELP = `Usage: npm run demo [-- options]

Runs a two-step DTM saga (a bank transfer) against the sample app and prints the gid, the final
status and the branch statuses DTM recorded.

Options:
  --dtm-url <url>   use this running DTM server (its server_url, e.g. http://localhost:36789/api/dtmsvr)
                    instead of starting one; also read from DTM_SERVER_URL
  --help            show this help
`;

interface QueryAnswer {
  transaction: { status: string; rollback_reason?: string } | null;
  branches: { branch_id: string; op: string; status: string }[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'dtm-url': { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  let stack: Stack | undefined;
  let serverUrl = values['dtm-url'] ?? process.env.DTM_SERVER_URL;
  if (!serverUrl) {
    stack = await startStack({ postgres: false, mariadb: false, redis: false });
    serverUrl = stack.info.dtm.serverUrl;
    console.log(`DTM server ${stack.info.dtm.version} started at ${serverUrl} (log: ${stack.info.dtm.logFile})`);
  } else {
    console.log(`using the DTM server at ${serverUrl}`);
  }
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  try {
    await app.listen(0, '127.0.0.1');
    const appUrl = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
    console.log(`sample app listening at ${appUrl}\n`);
    const bank = app.get(BankService);

    const before = bank.snapshot();
    const gid = await newGid(serverUrl);
    const transfer = JSON.stringify({ from: 'alice', to: 'bob', amount: 30 });
    await post(`${serverUrl}/submit`, {
      gid,
      trans_type: 'saga',
      steps: [
        { action: `${appUrl}/bank/trans-out`, compensate: `${appUrl}/bank/trans-out-compensate` },
        { action: `${appUrl}/bank/trans-in`, compensate: `${appUrl}/bank/trans-in-compensate` },
      ],
      payloads: [transfer, transfer],
    });
    const final = await waitForFinal(serverUrl, gid, 30_000);
    printTable([
      {
        mode: 'saga',
        what: 'transfer 30 alice -> bob',
        gid,
        status: final.transaction?.status ?? 'unknown',
        branches: final.branches.map((b) => b.status).join(','),
        balances: `${balances(before)} -> ${balances(bank.snapshot())}`,
      },
    ]);
    if (final.transaction?.status !== 'succeed') process.exitCode = 1;
  } finally {
    await app.close();
    await stack?.stop();
  }
}

async function newGid(serverUrl: string): Promise<string> {
  const res = await fetch(`${serverUrl}/newGid`);
  if (!res.ok) throw new Error(`newGid answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { gid: string }).gid;
}

async function post(url: string, body: unknown): Promise<void> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${await res.text()}`);
}

async function waitForFinal(serverUrl: string, gid: string, timeoutMs: number): Promise<QueryAnswer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = (await (await fetch(`${serverUrl}/query?gid=${gid}`)).json()) as QueryAnswer;
    const status = answer.transaction?.status;
    if (status === 'succeed' || status === 'failed' || Date.now() > deadline) return answer;
    await new Promise((r) => setTimeout(r, 100));
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
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i])).join('  ');
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) console.log(line(columns.map((c) => row[c])));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
