// bench/check-actions: what `branch_auth_check_actions` costs (docs/security.md). With it, each
// authenticated saga action and message branch is checked against DTM's record before it runs: one
// `/query` to DTM per call, from the branch app.
//
// Two copies of one app (bench/check-actions.app.ts), each in its own process, both with
// `branch_auth_keys`: "off" without the check, "on" with it. The load: completed two-step sagas with
// wait_result through the real DTM server (Redis store), each step that app's one decorated action,
// submitted by a DtmClient with the same key from `--callers` concurrent callers in this process.
// Per round each app runs once, in an order that alternates; figures are the medians of the paired
// per-round ratios: sagas/s on / off, and the branch app's CPU per saga (both its calls, with the
// checks' queries) off / on. DTM's CPU per saga is printed too: each check is a query DTM answers.
// --warmup S: each app's warm-up lasts S seconds (0: none).
//
//   npm run bench:check-actions -- [--callers 16] [--seconds 5] [--rounds 6] [--warmup 2]
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DtmClient, resolveDtmConfig } from 'nestjs-dtm';
import { benchStack, stackLabel } from './bench-stack.js';
import { closedLoopRun, processCpuMicros, startAppProcess } from './load.js';
import { formatSpread, interleaved, metered, pairedRatios, spread, type Measured } from './measure.js';

const { values } = parseArgs({
  options: {
    callers: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '6' },
    warmup: { type: 'string', default: '2' },
  },
});
const callers = Number(values.callers);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const warmup = Number(values.warmup);
for (const [name, n] of [['callers', callers], ['rounds', rounds]] as const) {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`--${name} must be a whole number >= 1, got ${values[name]}`);
}
if (!(seconds > 0)) throw new Error(`--seconds must be a number > 0, got ${values.seconds}`);
if (!(warmup >= 0)) throw new Error(`--warmup must be a number of seconds >= 0, got ${values.warmup}`);
const here = dirname(fileURLToPath(import.meta.url));
type Variant = 'off' | 'on';

async function main(): Promise<void> {
  const stack = await benchStack({ postgres: false, mariadb: false, redis: true, dtmStore: 'redis' });
  const apps: { child: import('node:child_process').ChildProcess; port: number }[] = [];
  try {
    const dtm = stack.info.dtm!;
    const key = randomBytes(33).toString('base64');
    const env = (check: boolean) => ({ NODE_ENV: 'production', DTM_URL: dtm.serverUrl, BRANCH_AUTH_KEY: key, CHECK_ACTIONS: check ? '1' : '0' });
    const started = { off: await startAppProcess([process.execPath, join(here, 'check-actions.app.js')], env(false)), on: await startAppProcess([process.execPath, join(here, 'check-actions.app.js')], env(true)) };
    apps.push(started.off, started.on);
    const client = new DtmClient(resolveDtmConfig({ config: { serverUrl: dtm.serverUrl, branchAuthKeys: [key] } }, {}));
    const dtmPid = stack.processes.find((p) => p.name.startsWith('dtm'))?.pid;
    const sagas = (variant: Variant, s: number) =>
      closedLoopRun(callers, s, async () => {
        const target = `http://127.0.0.1:${started[variant].port}/bench/step`;
        const saga = client.newSaga(await client.generateGid(), { waitResult: true }).add(target, '', { n: 1 }).add(target, '', { n: 1 });
        await saga.submit();
      });
    console.log(`check-actions: two-step sagas with wait_result through DTM (${dtm.store} store, ${stackLabel(stack)}), ${callers} callers, ${rounds} rounds of ${seconds} s, alternating, NODE_ENV=production`);
    if (warmup > 0) for (const variant of ['off', 'on'] as const) await sagas(variant, warmup); // warm-up
    const dtmCpu: Record<Variant, number[]> = { off: [], on: [] };
    const results = await interleaved<Variant>(['off', 'on'], rounds, async (variant) => {
      const before = dtmPid ? processCpuMicros(dtmPid) : undefined;
      let completed = 0;
      const measured: Measured = await metered(started[variant].child.pid!, async () => {
        const run = await sagas(variant, seconds);
        completed = run.completed;
        return run;
      });
      const after = dtmPid ? processCpuMicros(dtmPid) : undefined;
      if (before !== undefined && after !== undefined) dtmCpu[variant].push((after - before) / completed);
      return measured;
    });
    const rate = (v: Variant) => results[v].map((r) => r.rate);
    const cpu = (v: Variant) => results[v].map((r) => r.cpuPerCall ?? NaN);
    const med = (xs: number[]) => spread(xs).median;
    console.log(`  sagas/s: off ${med(rate('off')).toFixed(0)}, on ${med(rate('on')).toFixed(0)}; on / off = ${formatSpread(spread(pairedRatios(rate('on'), rate('off'))))}`);
    console.log(`  branch app CPU per saga (2 calls): off ${med(cpu('off')).toFixed(0)} µs, on ${med(cpu('on')).toFixed(0)} µs; off / on = ${formatSpread(spread(pairedRatios(cpu('off'), cpu('on'))))}`);
    if (dtmCpu.off.length === rounds) console.log(`  DTM CPU per saga: off ${med(dtmCpu.off).toFixed(0)} µs, on ${med(dtmCpu.on).toFixed(0)} µs`);
    client.onModuleDestroy();
  } finally {
    for (const app of apps) app.child.kill('SIGTERM');
    await stack.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
