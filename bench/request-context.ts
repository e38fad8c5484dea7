// Where the module keeps the request context (the pass-through headers of the call being served)
// when an OpenTelemetry SDK is registered: in the SDK's context (the default), or in the module's
// own AsyncLocalStorage (`openTelemetry: false`, and before #16's change always). On Node 20 every
// AsyncLocalStorage in use adds work to every promise of the process: the figure is what one call
// costs with the module's storage beside the SDK's, against the SDK's alone.
//
// Each round forks one process per setting (in turn, the first alternating), with the SDK of the
// branch benchmarks registered (bench/otel-sdk.ts) and a DtmInstrumentation made as DtmModule
// makes it. A call is what a branch call does with the context: the module enters it with the
// call's headers, a span is made and made active around the handler, the handler awaits `--awaits`
// times (a Nest handler and its framework await a few dozen promises) and reads the headers back.
//
//   node .build/bench/request-context.js [--awaits 15] [--calls 200000] [--rounds 6]
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { context, trace } from '@opentelemetry/api';
import { currentPassThroughHeaders, dtmContext } from '../lib/context/dtm-context.js';
import { DtmInstrumentation } from '../lib/observability/dtm-instrumentation.js';
import { formatSpread, pairedRatios, spread } from './measure.js';
import { registerDroppingOtelSdk } from './otel-sdk.js';

const { values } = parseArgs({
  options: {
    awaits: { type: 'string', default: '15' },
    calls: { type: 'string', default: '200000' },
    rounds: { type: 'string', default: '6' },
    child: { type: 'string' },
  },
});
const awaits = Number(values.awaits);
const calls = Number(values.calls);

/** The two settings: the module's own storage beside the SDK's, or the SDK's context alone. */
const SETTINGS = ['own', 'otel'] as const;
type Setting = (typeof SETTINGS)[number];

/** In a child: makes `calls` calls (after a warm-up of a tenth) and reports the CPU time per call in µs. */
async function child(setting: Setting): Promise<void> {
  registerDroppingOtelSdk();
  new DtmInstrumentation(setting === 'own' ? { openTelemetry: false } : {});
  const tracer = trace.getTracer('bench');
  const headers = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
  const handler = async (): Promise<void> => {
    for (let i = 0; i < awaits; i++) await Promise.resolve(i);
    if (currentPassThroughHeaders() !== headers) throw new Error('the request context was lost');
  };
  const call = (): Promise<void> =>
    dtmContext.run({ headers }, () => {
      const span = tracer.startSpan('DTM saga action bench');
      return context.with(trace.setSpan(context.active(), span), handler).then(() => span.end());
    });
  for (let k = 0; k < calls / 10; k++) await call();
  const cpu = process.cpuUsage();
  for (let k = 0; k < calls; k++) await call();
  const used = process.cpuUsage(cpu);
  process.send!({ micros: (used.user + used.system) / calls });
  process.exit(0);
}

/** Runs `setting` in a process of its own; the CPU time per call in µs. */
function measure(setting: Setting): Promise<number> {
  return new Promise((resolve, reject) => {
    const proc = fork(fileURLToPath(import.meta.url), ['--child', setting, '--awaits', String(awaits), '--calls', String(calls)]);
    proc.on('message', (m: { micros: number }) => resolve(m.micros));
    proc.on('exit', (code) => (code === 0 ? undefined : reject(new Error(`${setting} exited with ${code}`))));
  });
}

if (values.child) {
  await child(values.child as Setting);
} else {
  const rounds = Number(values.rounds);
  const results: Record<Setting, number[]> = { own: [], otel: [] };
  console.log(`request-context: ${rounds} rounds of ${calls} calls per setting, ${awaits} awaits per call, SDK registered (bench/otel-sdk.ts)`);
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? SETTINGS : [...SETTINGS].reverse();
    for (const setting of order) results[setting].push(await measure(setting));
  }
  const show = (xs: number[]) => formatSpread(spread(xs), 2);
  console.log(`  the module's own AsyncLocalStorage beside the SDK's: CPU per call ${show(results.own)} µs`);
  console.log(`  in the SDK's context (the default):                  CPU per call ${show(results.otel)} µs`);
  console.log(`  paired per-round ratio own / SDK's context = ${show(pairedRatios(results.own, results.otel))}`);
}
