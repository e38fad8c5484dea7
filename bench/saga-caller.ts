// One caller process of bench/saga-throughput: runs one driver of bench/saga-drivers.ts (and nothing
// else), so that its CPU time is that driver's only: no other driver's code, garbage or
// connections in the same process. Started with fork(); told what to do over IPC:
//   { run: seconds }  -> runs the saga from `callers` loops; answers { completed, elapsedSeconds, cpuMicros }
//   { close: true }   -> closes the driver's connections and exits (as it does when the benchmark goes away)
//
//   node saga-caller.js <protocol> <role> <serverUrl> <grpcAddress> <branchUrl> <callers>
import 'reflect-metadata';
import { closedLoopRun } from './load.js';
import { sagaDriver, type Protocol, type SagaDriver } from './saga-drivers.js';

const [protocol, role, serverUrl, grpcAddress, branchUrl, callers] = process.argv.slice(2);
const driver = sagaDriver({ serverUrl, grpcAddress, branchUrl }, protocol as Protocol, role as SagaDriver['role']);

process.on('message', (message: { run?: number; close?: boolean }) => {
  if (message.close) {
    driver.close();
    process.exit(0);
  }
  const cpu = process.cpuUsage();
  closedLoopRun(Number(callers), message.run!, () => driver.run()).then(
    ({ completed, elapsedSeconds }) => {
      const used = process.cpuUsage(cpu);
      process.send!({ completed, elapsedSeconds, cpuMicros: used.user + used.system });
    },
    (err: unknown) => process.send!({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0)); // the benchmark ended without saying so
process.send!({ ready: true });
