// bench/branch-overhead: requests per second of a decorated branch endpoint (@SagaAction, with
// DtmModule) versus a plain Nest endpoint doing the same work (no nestjs-dtm), on Express. Each
// app runs in its own process with the same settings (NODE_ENV, one core's worth of Node); this
// process is the loopback load generator (keep-alive connections, the DTM query string and a JSON
// body on every request, as DTM sends them). Target: decorated / plain >= 0.90.
// With --trace every request also carries a W3C traceparent, which the module passes on: it then
// enters its AsyncLocalStorage for each request, which on Node 20 slows every promise down.
//
//   npm run bench:branch -- [--connections 32] [--seconds 5] [--rounds 3] [--env production] [--trace]
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { closedLoop, median, postJson, startAppProcess } from './load.js';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '32' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    env: { type: 'string', default: 'production' },
    trace: { type: 'boolean', default: false },
  },
});
const connections = Number(values.connections);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const here = dirname(fileURLToPath(import.meta.url));
const body = JSON.stringify({ lines: [{ sku: 'a', amount: 3 }, { sku: 'b', amount: 4 }] });
const query = '?gid=BenchGid0000000000001&trans_type=saga&branch_id=01&op=action';
const headers: Record<string, string> = values.trace ? { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } : {};

const startApp = (mode: 'dtm' | 'plain') => startAppProcess([process.execPath, join(here, 'branch-overhead.app.js'), mode], { NODE_ENV: values.env! });

/** Sends requests on `connections` keep-alive connections for `durationSeconds`; returns 200-answers per second. */
async function load(port: number, durationSeconds: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  let bad = 0;
  const rate = await closedLoop(connections, durationSeconds, async () => {
    if ((await postJson(agent, port, `/bench/branch${query}`, body, headers)) !== 200) bad++;
  });
  agent.destroy();
  if (bad > 0) throw new Error(`${bad} answers were not 200`);
  return rate;
}

async function main(): Promise<void> {
  console.log(
    `branch-overhead: Express, NODE_ENV=${values.env}, ${connections} connections, ${rounds} rounds of ${seconds} s${values.trace ? ', traceparent on every request' : ''}`,
  );
  const apps = { dtm: await startApp('dtm'), plain: await startApp('plain') };
  try {
    await load(apps.dtm.port, 2); // warm-up: JIT, connections
    await load(apps.plain.port, 2);
    const rates: Record<'dtm' | 'plain', number[]> = { dtm: [], plain: [] };
    for (let i = 0; i < rounds; i++) {
      rates.dtm.push(await load(apps.dtm.port, seconds));
      rates.plain.push(await load(apps.plain.port, seconds));
      console.log(`  round ${i + 1}: decorated ${rates.dtm[i].toFixed(0)}/s   plain ${rates.plain[i].toFixed(0)}/s`);
    }
    const [d, p] = [median(rates.dtm), median(rates.plain)];
    console.log(`decorated branch (DtmModule + @SagaAction): ${d.toFixed(0)} requests/s (median)`);
    console.log(`plain Nest endpoint:                        ${p.toFixed(0)} requests/s (median)`);
    console.log(`decorated / plain = ${(d / p).toFixed(3)} (target >= 0.90)`);
  } finally {
    for (const app of Object.values(apps)) app.child.kill('SIGTERM');
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
