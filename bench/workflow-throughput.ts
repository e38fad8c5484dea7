// bench/workflow-throughput: completed two-step workflows per second vs completed two-step sagas per
// second, through the same DTM server (Redis store) and the same branches (bench/saga-branches.ts, a
// bare node:http server in a child process), DtmClient talking HTTP to DTM.
//
//   saga:     newGid, then submit with wait_result: DTM calls TransOut and TransIn and answers.
//   workflow: newGid, then executeWorkflow: prepareWorkflow; per step the app calls the branch and
//             records it (registerBranch, sync); then submit.
//
// Both from N concurrent callers in this process (which also serves the workflow resume endpoint,
// never called here: every workflow finishes in its first execution), rounds interleaved with a
// rotating start. Prints completed operations per second, this process's CPU time and DTM's (+
// Redis's) per operation, and the DTM calls each needs. No target yet: the ratio says what a
// workflow costs over a saga. --warmup S: each driver's warm-up lasts S seconds (0: none).
//
//   npm run bench:workflow -- [--callers 16] [--seconds 8] [--rounds 6] [--warmup 2]
import 'reflect-metadata';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DtmClient, DtmModule, DtmWorkflow, type WorkflowContext } from 'nestjs-dtm';
import { freePort } from '../test/support/services/process.js';
import { benchStack, stackLabel } from './bench-stack.js';
import { closedLoopRun, processCpuMicros, quantile, startAppProcess } from './load.js';

const { values } = parseArgs({
  options: {
    callers: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '6' },
    warmup: { type: 'string', default: '2' },
  },
});
const callers = Number(values.callers);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const warmup = Number(values.warmup);
if (!(warmup >= 0)) throw new Error(`--warmup must be a number of seconds >= 0, not ${values.warmup}`);
const here = dirname(fileURLToPath(import.meta.url));
const payload = { amount: 30 };

/** Where the branches are, for the workflow (set once the branch process listens). */
let branchUrl = '';

@Injectable()
class BenchWorkflows {
  /** The saga's two steps, as a workflow: TransOut then TransIn, each with its compensation registered first. */
  @DtmWorkflow('bench.two-steps')
  async twoSteps(wf: WorkflowContext<{ amount: number }>) {
    await wf.step('out').onRollback((b) => b.http(`${branchUrl}/TransOutRevert`, wf.input)).http(`${branchUrl}/TransOut`, wf.input);
    await wf.step('in').onRollback((b) => b.http(`${branchUrl}/TransInRevert`, wf.input)).http(`${branchUrl}/TransIn`, wf.input);
  }
}

/** CPU time of processes `pids` so far (µs), NaN where it cannot be read (or no process is given: the harness's shared servers). */
const cpuOf = (pids: number[]) => (pids.length === 0 ? Number.NaN : pids.reduce((sum, pid) => sum + (processCpuMicros(pid) ?? Number.NaN), 0));
const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '–');
const range = (xs: number[], digits = 0) => `${fmt(quantile(xs, 0.5), digits)} [${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)}]`;

async function main(): Promise<void> {
  const stack = await benchStack({ dtmStore: 'redis', postgres: false, mariadb: false });
  const branches = await startAppProcess([process.execPath, join(here, 'saga-branches.js')], {});
  branchUrl = `http://127.0.0.1:${branches.port}`;
  const port = await freePort();
  @Module({
    imports: [DtmModule.forRoot({ config: { serverUrl: stack.info.dtm!.serverUrl, appUrl: `http://127.0.0.1:${port}` } })],
    providers: [BenchWorkflows],
  })
  class BenchModule {}
  const app = await NestFactory.create(BenchModule, { logger: ['error'] });
  await app.listen(port, '127.0.0.1');
  const client = app.get(DtmClient);
  const serverPids = stack.processes.map((p) => p.pid);
  const drivers = [
    {
      name: 'saga (wait_result)',
      calls: 'newGid, submit (DTM calls both branches)',
      run: async () => {
        const gid = await client.generateGid();
        await client
          .newSaga(gid, { waitResult: true })
          .add(`${branchUrl}/TransOut`, `${branchUrl}/TransOutRevert`, payload)
          .add(`${branchUrl}/TransIn`, `${branchUrl}/TransInRevert`, payload)
          .submit();
      },
      samples: [] as { rate: number; cpu: number; server: number }[],
    },
    {
      name: 'workflow',
      calls: 'newGid, prepareWorkflow, 2 x (the app calls the branch, registerBranch), submit',
      run: async () => {
        await client.executeWorkflow('bench.two-steps', await client.generateGid(), payload);
      },
      samples: [] as { rate: number; cpu: number; server: number }[],
    },
  ];
  try {
    console.log(`workflow-throughput: DTM ${stack.info.dtm!.version} (${stack.info.dtm!.store} store, ${stackLabel(stack)}), ${callers} callers, ${rounds} rounds of ${seconds} s, drivers interleaved`);
    if (warmup > 0) for (const d of drivers) await closedLoopRun(callers, warmup, d.run); // warm-up
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < drivers.length; k++) {
        const d = drivers[(round + k) % drivers.length];
        const serverBefore = cpuOf(serverPids);
        const cpu = process.cpuUsage();
        const { completed, elapsedSeconds } = await closedLoopRun(callers, seconds, d.run);
        const used = process.cpuUsage(cpu);
        d.samples.push({ rate: completed / elapsedSeconds, cpu: (used.user + used.system) / completed, server: (cpuOf(serverPids) - serverBefore) / completed });
      }
      console.log(`  round ${round + 1}: ${drivers.map((d) => `${d.name} ${fmt(d.samples[round].rate, 1)}/s`).join('   ')}`);
    }
    for (const d of drivers) {
      console.log(
        `${d.name.padEnd(20)} ${range(d.samples.map((s) => s.rate), 1)} completed/s; this process ${range(d.samples.map((s) => s.cpu))} µs CPU each; DTM + Redis ${range(d.samples.map((s) => s.server))} µs each (${d.calls})`,
      );
    }
    const ratios = drivers[0].samples.map((s, i) => drivers[1].samples[i].rate / s.rate);
    console.log(`workflows/s ÷ sagas/s, per round: median ${fmt(quantile(ratios, 0.5), 3)} [${fmt(Math.min(...ratios), 3)}–${fmt(Math.max(...ratios), 3)}] (no target yet)`);
  } finally {
    await app.close();
    branches.child.kill('SIGTERM');
    await stack.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
