// bench/saga-throughput: completed two-step sagas per second through the real DTM server (Redis
// store), with N concurrent callers, driven
//   (a) by DtmClient,
//   (b) by hand-written requests making the same calls (GET newGid, POST submit with wait_result)
//       with axios set up as the library sets it up (keep-alive agent, no redirects, bodies as text):
//       the HTTP client of this product (and of Nest's HttpModule), so a/b is what nestjs-dtm itself
//       costs on top of the requests. Target: a/b >= 0.95.
//   (c) for reference, the same hand-written requests with bare node:http, the leanest client there
//       is: a/c also counts axios's own cost per request.
// A saga counts when submit answered 200: with wait_result DTM answers after its first round, and
// 200 only if both steps succeeded. The branches are a bare node:http server in this process.
//
//   npm run bench:saga -- [--callers 16] [--seconds 8] [--rounds 6]
import 'reflect-metadata';
import http from 'node:http';
import { parseArgs } from 'node:util';
import axios from 'axios';
import { DtmClient, resolveDtmConfig } from 'nestjs-dtm';
import { startStack } from '../test/support/services/stack.js';
import { closedLoop, median } from './load.js';

const { values } = parseArgs({
  options: { callers: { type: 'string', default: '16' }, seconds: { type: 'string', default: '8' }, rounds: { type: 'string', default: '6' } },
});
const callers = Number(values.callers);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);

/**
 * Runs `oneSaga` from `callers` loops for `durationSeconds`; returns completed sagas per second and
 * this process's CPU time per saga in microseconds (the branches, which also run here, included).
 */
async function measure(oneSaga: () => Promise<void>, durationSeconds: number): Promise<{ rate: number; cpuMicros: number }> {
  const cpu = process.cpuUsage();
  const rate = await closedLoop(callers, durationSeconds, oneSaga);
  const used = process.cpuUsage(cpu);
  return { rate, cpuMicros: (used.user + used.system) / (rate * durationSeconds) };
}

async function main(): Promise<void> {
  const stack = await startStack({ dtmStore: 'redis', postgres: false, mariadb: false });
  // the branches: as cheap as possible, so the figures measure the transaction path
  const branches = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  branches.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => branches.listen(0, '127.0.0.1', r));
  const branchUrl = `http://127.0.0.1:${(branches.address() as { port: number }).port}`;
  const serverUrl = stack.info.dtm!.serverUrl;
  const payload = { amount: 30 };

  const client = new DtmClient(resolveDtmConfig({ config: { serverUrl } }, {}));
  const viaLibrary = async () => {
    const gid = await client.generateGid();
    await client
      .newSaga(gid, { waitResult: true })
      .add(`${branchUrl}/TransOut`, `${branchUrl}/TransOutRevert`, payload)
      .add(`${branchUrl}/TransIn`, `${branchUrl}/TransInRevert`, payload)
      .submit();
  };

  const body = JSON.stringify(payload);
  const sagaBody = (gid: string) => ({
    gid,
    trans_type: 'saga',
    wait_result: true,
    timeout_to_fail: 60,
    request_timeout: 30,
    retry_interval: 10,
    concurrent: false,
    steps: [
      { action: `${branchUrl}/TransOut`, compensate: `${branchUrl}/TransOutRevert` },
      { action: `${branchUrl}/TransIn`, compensate: `${branchUrl}/TransInRevert` },
    ],
    payloads: [body, body],
    protocol: '',
  });

  const agent = new http.Agent({ keepAlive: true });
  const byAxios = axios.create({
    adapter: 'http',
    httpAgent: agent,
    timeout: 10_000,
    maxRedirects: 0,
    responseType: 'text',
    transformRequest: [(d: unknown) => d],
    transformResponse: [(d: unknown) => d],
  });
  const json = { 'content-type': 'application/json' };
  const byHandAxios = async () => {
    const { data } = await byAxios.get<string>(`${serverUrl}/newGid`);
    const { gid } = JSON.parse(data) as { gid: string };
    await byAxios.post(`${serverUrl}/submit`, JSON.stringify(sagaBody(gid)), { headers: json }); // throws unless 2xx
  };
  const byHandHttp = async () => {
    const gidAnswer = await request(agent, 'GET', `${serverUrl}/newGid`);
    const { gid } = JSON.parse(gidAnswer.text) as { gid: string };
    const res = await request(agent, 'POST', `${serverUrl}/submit`, sagaBody(gid));
    if (res.status !== 200) throw new Error(`submit answered ${res.status}: ${res.text}`);
  };

  try {
    console.log(`saga-throughput: DTM ${stack.info.dtm!.version} (redis store), ${callers} callers, ${rounds} rounds of ${seconds} s each`);
    const drivers = [
      { name: '(a) DtmClient', run: viaLibrary, rates: [] as number[], cpu: [] as number[] },
      { name: '(b) by hand, axios', run: byHandAxios, rates: [] as number[], cpu: [] as number[] },
      { name: '(c) by hand, node:http', run: byHandHttp, rates: [] as number[], cpu: [] as number[] },
    ];
    for (const d of drivers) await measure(d.run, 2); // warm-up: connections, JIT, DTM's Redis scripts
    for (let i = 0; i < rounds; i++) {
      // each round starts with another driver, so that none is always measured right after the fastest
      for (let k = 0; k < drivers.length; k++) {
        const d = drivers[(i + k) % drivers.length];
        const { rate, cpuMicros } = await measure(d.run, seconds);
        d.rates.push(rate);
        d.cpu.push(cpuMicros);
      }
      console.log(`  round ${i + 1}: ${drivers.map((d) => `${d.name} ${d.rates[i].toFixed(1)}/s`).join('   ')}`);
    }
    const [a, b, c] = drivers.map((d) => median(d.rates));
    for (const d of drivers) {
      console.log(`${d.name.padEnd(24)} ${median(d.rates).toFixed(1)} completed sagas/s, ${median(d.cpu).toFixed(0)} µs of this process's CPU per saga (medians)`);
    }
    console.log(`a/b = ${(a / b).toFixed(3)} (target >= 0.95)`);
    console.log(`a/c = ${(a / c).toFixed(3)} (reference: includes axios's own cost per request)`);
  } finally {
    client.onModuleDestroy();
    agent.destroy();
    await new Promise((r) => branches.close(r));
    branches.closeAllConnections();
    await stack.stop();
  }
}

/** One HTTP request with node:http; resolves with status and body text. */
function request(agent: http.Agent, method: 'GET' | 'POST', url: string, json?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const data = json === undefined ? undefined : JSON.stringify(json);
    const req = http.request(url, { method, agent, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`timeout: ${url}`)));
    req.end(data);
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
