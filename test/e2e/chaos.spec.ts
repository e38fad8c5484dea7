// Three short seeds of the fault-injection suite (test/support/chaos/chaos.ts; the long run is
// `npm run chaos`, its figures in bench/README.md): transfers in every mode between a PostgreSQL and
// a MariaDB bank while a proxy injects 500s, late and duplicate deliveries and lost answers, the
// bank process is killed with -9 and DTM (a server of this file's own) is killed with -9,
// both started again, DTM is paused once (SIGSTOP for 4 s), each bank's database stops answering
// the bank and the outbox for longer than the branch timeout, once, and so does DTM's own store (this
// run's DTM keeps its transactions in the harness's Redis). Workflow transfers run among the others:
// the bank's process is their app, so its kill -9 kills workflows mid-way, which DTM resumes there
// (through the faulty proxy) once it is back; the kill waits for a workflow's withdrawal to have run
// at the bank and lands before the app hears of it, so at least one is killed mid-run (and must be
// resumed, end final, its steps committed once each). Every invariant must hold at the end.
// The second seed does the same over gRPC (runChaos's protocol 'grpc': the caller on DTM's gRPC API,
// the bank's branches @GrpcMethod handlers, the faults injected by a gRPC proxy in front of them),
// and cuts (resets) every gRPC connection to DTM and to the bank twice, calls in flight on them lost;
// its workflows are gRPC workflows (steps on the @GrpcMethods, DTM resuming them over gRPC through the proxy).
// The third seed runs over HTTP with authenticated branch calls (branch_auth_keys on the bank and the
// caller, branch_auth_check_actions on the bank): every call signed and checked, confirms and
// compensations only in DTM's phase, saga and msg actions only when due, under the same faults and
// with some calls replayed (delivered again 3 to 8 s after they were answered).
import { randomBytes } from 'node:crypto';
import { expect, it } from '@jest/globals';
import { runChaos, type ChaosOptions, type ChaosReport } from '../support/chaos/chaos.js';
import { fileDatabases } from '../support/databases.js';
import { harness } from '../support/harness.js';
import { runDirFrom } from '../support/services/process.js';

/**
 * How long a seed may take: about 40 s on a quiet machine, its drain up to 45 s more when DTM's retries come late; one
 * CI run's seed 7 was still in its final checks at 115 s (the machine busy with the other files), and a seed cut short
 * leaves prepared XA transactions that fail the next seeds' fresh databases.
 */
const SEED_TIMEOUT_MS = 170_000;

/**
 * A seed with the faults every seed injects (the bank and DTM killed once, DTM paused once, each
 * database and DTM's store stalled once, workflows among the transfers) and what every seed must show:
 * no broken invariant, nothing stuck, every fault injected, transfers made in every mode. Once the faults of processes
 * are over, DTM's cron is nudged every second while callers still wait (`nudgeAfterFaults`: their retries do not sit
 * out DTM's backoff, doubled at each failure through the faults; the proxy's faults go on).
 */
async function runSeed(options: Pick<ChaosOptions, 'seed' | 'transfers' | 'drainSeconds'> & Partial<ChaosOptions>): Promise<ChaosReport> {
  const dbs = await fileDatabases();
  const report = await runChaos({
    concurrency: 8,
    runDir: runDirFrom(harness().runDir),
    pgUrl: dbs.postgres.url,
    mysqlUrl: dbs.mariadb.url,
    bankKills: 1,
    dtmRestarts: 1,
    dbStalls: 2,
    dtmPauses: 1,
    dtmRedis: harness().redis!,
    dtmStoreStalls: 1,
    workflows: true,
    nudgeAfterFaults: true,
    ...options,
  });

  expect(report.problems).toEqual([]);
  expect(report.stuck).toBe(0);
  expect([report.bankKills, report.dtmRestarts, report.dbStalls, report.dtmPauses, report.dtmStoreStalls]).toEqual([1, 1, 2, 1, 1]);
  // DTM's cron reads its store every second: the store's stall held DTM's traffic
  expect(report.dtmStoreHeld.connections).toBeGreaterThan(0);
  // the stalls held traffic to the databases (which store a stall catches depends on the run's timing;
  // harness.spec.ts shows the proxy holds both)
  expect(report.stallsHeld.pg.connections + report.stallsHeld.mysql.connections).toBeGreaterThan(0);
  // the faults did happen (the proxy injects each kind early: pickFault), and in every mode (workflows included) transfers were made
  expect(Object.entries(report.faultsInjected).every(([fault, n]) => (fault === 'replay' && !options.faults?.replay ? n === 0 : n > 0))).toBe(true);
  expect(Object.keys(report.byMode)).toContain('workflow');
  expect(Object.values(report.byMode).every((outcomes) => Object.values(outcomes).reduce((a, b) => a + b, 0) > 0)).toBe(true);
  expect(report.dtmOutcomes.succeed).toBeGreaterThan(0);
  // the bank's kill landed inside a workflow (its withdrawal run at the bank, the answer held until the kill: the
  // proxy does so whatever the draws), which DTM held prepared with its app dead; DTM resumed it (and any other the
  // kill caught mid-run) on the restarted bank, which ended it: final, its steps committed once each as its outcome says
  const killed = report.workflowKills;
  expect(killed.caught).toMatch(/^chaos-/);
  expect(report.transfersDetail.find((t) => t.gid === killed.caught)).toMatchObject({ killedMidRun: true, resumed: true, dtm: expect.stringMatching(/^(succeed|failed)$/) });
  expect(killed.midRun).toBeGreaterThanOrEqual(1);
  expect([killed.resumed, killed.final]).toEqual([killed.midRun, killed.midRun]);
  // the calls DTM made were signed (its record holds the module's tokens) exactly when the run had keys
  if (options.branchAuthKey) expect(report.signedByDtm).toBeGreaterThan(0);
  else expect(report.signedByDtm).toBe(0);
  return report;
}

it('seed 7, 40 transfers (workflows among them), DTM paused once, each database and DTM\'s store stalled once: every transaction final, money conserved, no step twice, nothing prepared, no caller view contradicting DTM', async () => {
  await runSeed({ seed: 7, transfers: 40, drainSeconds: 45 });
}, SEED_TIMEOUT_MS);

it('over gRPC, seed 11, 30 transfers (gRPC workflows among them), the bank and DTM killed once, DTM paused once, each database and DTM\'s store stalled once, the gRPC connections cut twice: every transaction final, money conserved, no step twice, nothing prepared, no caller view contradicting DTM', async () => {
  const report = await runSeed({ protocol: 'grpc', seed: 11, transfers: 30, connectionCuts: 2, drainSeconds: 30 });
  // the cuts reset the gRPC connections open then (the caller's to DTM at least)
  expect(report.connectionCuts.cuts).toBe(2);
  expect(report.connectionCuts.connections).toBeGreaterThan(0);
}, SEED_TIMEOUT_MS);

it('with branch_auth_keys and branch_auth_check_actions, seed 5, 30 transfers (workflows among them), the same faults and a quarter of the calls replayed 3 to 8 s later: every call signed and checked, replays out of their phase refused, and every transaction final, money conserved, no step twice, nothing prepared, no caller view contradicting DTM', async () => {
  const report = await runSeed({ seed: 5, transfers: 30, drainSeconds: 30, branchAuthKey: randomBytes(33).toString('base64'), branchAuthCheckActions: true, faults: { replay: 0.25 } });
  // a replay of a call DTM made, delivered once every transaction had ended, was refused (the proxy holds one back
  // whatever the draws), and so were the replays that came after DTM ended their transaction (or before it was due)
  expect(report.lateReplay).toBe(401);
  expect(Object.values(report.authRefusals).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
}, SEED_TIMEOUT_MS);
