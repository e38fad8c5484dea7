// One caller process of bench/xa-throughput: runs one driver (and nothing else), so that its CPU
// time is that driver's only. Started with fork(); told what to do over IPC:
//   { run: seconds }  -> runs the transaction from `callers` loops; answers { completed, elapsedSeconds, cpuMicros, gids }
//   { close: true }   -> closes its client and exits (as it does when the benchmark goes away)
// Drivers, each a two-leg transfer (PostgreSQL row id: -30, MariaDB row id: +30) with wait_result,
// through TransactionHelper (a new gid from DTM, then the transaction):
//   xa-module: executeXa, the branches the participant's @XaBranch (HTTP routes or gRPC methods);
//   xa-hand:   executeXa, the branches the participant's XA written by hand (HTTP only);
//   saga:      executeSaga, the steps the participant's @SagaAction behind the barrier.
//
//   node xa-caller.js <protocol> <driver> <serverUrl> <grpcAddress> <appUrl> <appGrpcAddress> <callers> <rows>
import 'reflect-metadata';
import { DtmClient, TransactionHelper, resolveDtmConfig } from 'nestjs-dtm';
import { closedLoopRun } from './load.js';

const [protocol, driver, serverUrl, grpcAddress, appUrl, appGrpc, callers, rowCount] = process.argv.slice(2);
const rows = Number(rowCount);
const grpc = protocol === 'grpc';
const client = new DtmClient(resolveDtmConfig({ config: { serverUrl, ...(grpc ? { protocol: 'grpc', grpcServer: grpcAddress } : {}) } }, {}));
const helper = new TransactionHelper(client);

/** bench.Move { id } as protobuf (field 1, varint): the gRPC branches' payload. */
function moveBytes(id: number): Uint8Array {
  const bytes = [0x08];
  for (let v = id; v >= 0x80; v >>>= 7) bytes.push((v & 0x7f) | 0x80);
  bytes.push(id >>> (7 * (bytes.length - 1)));
  return Uint8Array.from(bytes);
}

/** The branch of `leg` ('pg' | 'mysql') of this driver: a URL, or a gRPC target. */
function target(leg: 'pg' | 'mysql'): string {
  if (grpc) return `${appGrpc}/bench.XaBench/${leg === 'pg' ? 'Pg' : 'Mysql'}${driver === 'saga' ? 'Saga' : ''}`;
  return `${appUrl}/${driver === 'xa-module' ? 'xa' : driver === 'xa-hand' ? 'hand' : 'saga'}/${leg}`;
}
const [pgTarget, myTarget] = [target('pg'), target('mysql')];
if (grpc && driver === 'xa-hand') throw new Error('xa-hand is HTTP only');

let sequence = 0;
let gids: string[] = [];

async function once(): Promise<void> {
  const id = (sequence++ % rows) + 1;
  const data = grpc ? moveBytes(id) : { id };
  const gid = await helper.mustGenGid();
  gids.push(gid); // before the transaction: one that throws is checked too (the run fails anyway)
  if (driver === 'saga') {
    await helper.executeSaga(
      gid,
      [
        { action: pgTarget, compensate: '', data },
        { action: myTarget, compensate: '', data },
      ],
      { waitResult: true },
    );
  } else {
    await helper.executeXa(
      gid,
      [
        { action: pgTarget, data },
        { action: myTarget, data },
      ],
      { waitResult: true },
    );
  }
}

process.on('message', (message: { run?: number; close?: boolean }) => {
  if (message.close) {
    client.onModuleDestroy();
    process.exit(0);
  }
  gids = [];
  const cpu = process.cpuUsage();
  closedLoopRun(Number(callers), message.run!, once).then(
    ({ completed, elapsedSeconds }) => {
      const used = process.cpuUsage(cpu);
      process.send!({ completed, elapsedSeconds, cpuMicros: used.user + used.system, gids });
    },
    (err: unknown) => process.send!({ error: err instanceof Error ? (err.stack ?? err.message) : String(err), gids }),
  );
});
process.on('disconnect', () => process.exit(0)); // the benchmark ended without saying so
process.send!({ ready: true });
