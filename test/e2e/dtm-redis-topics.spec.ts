// DTM v1.19 on its Redis store reads the topics it knows (every ConfigUpdateInterval, and at start)
// with one SCAN call from cursor 0 without COUNT (storage/redis FindKV): Redis answers it with the
// matching keys among the first few (about 10) it looked at, whatever the pattern, so in a Redis
// holding more keys (DTM's own keep each transaction for a day) a topic subscribed there is mostly
// never found, and a message to it is refused "topic not found" for ever. Pinned on a Redis of its
// own (what it holds decides), with the module's DtmServerError saying so and what to do instead.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { DtmServerError } from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { sleep } from '../support/fixtures.js';
import { dtmGet, harness, queryTrans } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { testRedis } from '../support/redis-client.js';
import { startDtm, type DtmInfo } from '../support/services/dtm.js';
import { runDirFrom, type ManagedProcess } from '../support/services/process.js';
import { startRedis } from '../support/services/redis.js';

let redis: { url: string; process: ManagedProcess } | undefined;
let dtm: { info: DtmInfo; process: ManagedProcess } | undefined;
let app: DtmTestApp;
let recorder: Recorder;

beforeAll(async () => {
  const runDir = runDirFrom(harness().runDir);
  const started = await startRedis(runDir, { name: 'redis-topics' });
  redis = { url: started.info.url, process: started.process };
  dtm = await startDtm(runDir, { name: 'dtm-redis-topics', store: 'redis', redis: started.info });
  recorder = await startRecorder();
  app = await startDtmApp({ config: { serverUrl: dtm.info.serverUrl, protocol: 'http' } });
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
  await dtm?.process.stop();
  await redis?.process.stop();
});

async function subscribe(topic: string): Promise<void> {
  const answer = await dtmGet(`/subscribe?topic=${topic}&url=${encodeURIComponent(recorder.urlFor('/Subscriber'))}&remark=test`, dtm!.info.serverUrl);
  expect(answer.status).toBe(200);
  await sleep(2500); // past DTM's next read of its topics (ConfigUpdateInterval 1 s here)
}

it('pins DTM v1.19 on Redis: a topic is found while Redis holds a few keys, not once it holds many; the refusal is DtmServerError saying why and to add() the subscribers instead, nothing stored or run', async () => {
  await subscribe('found-topic');
  const gid = await app.client.generateGid();
  expect((await app.client.newMsg(gid).addTopic('found-topic', { n: 1 }).submitAndWait()).status).toBe('succeed');
  expect(recorder.callsFor(gid).map((c) => c.path)).toEqual(['/Subscriber']);

  // 20 000 other keys (DTM's transactions, a barrier's, a cache's in a shared Redis): DTM's one SCAN
  // now meets the topic's key with a chance of about 1 in 2 000
  const client = testRedis(redis!.url);
  let lostTopic = '';
  try {
    const fill = client.pipeline();
    for (let i = 0; i < 20_000; i++) fill.set(`other:${i}`, 'x');
    await fill.exec();
    // Where a key lands depends on Redis's hash seed, random per server start: about once in 2 000
    // starts the topic's key is among those DTM's one SCAN meets, and DTM finds it. So the topic used
    // is one the same SCAN (cursor 0, DTM's pattern, no COUNT) misses, as seen after DTM's read.
    for (let i = 0; i < 5 && !lostTopic; i++) {
      await subscribe(`lost-topic-${i}`);
      expect(await client.exists(`{dtm}_kv_topics_lost-topic-${i}`)).toBe(1); // DTM's key for it
      const [, seen] = await client.scan(0, 'MATCH', '{dtm}_kv_topics_*');
      if (!seen.includes(`{dtm}_kv_topics_lost-topic-${i}`)) lostTopic = `lost-topic-${i}`;
    }
  } finally {
    client.disconnect();
  }
  expect(lostTopic).not.toBe('');
  const lost = await app.client.generateGid();
  const error = await app.client.newMsg(lost).addTopic(lostTopic, { n: 1 }).submitAndWait({ timeout: 15 }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DtmServerError);
  expect((error as Error).message).toMatch(/topic not found.*On its Redis store DTM v1\.19 reads them with one SCAN call.*add\(\) each subscriber's URL instead/s);
  expect((await queryTrans(lost, dtm!.info.serverUrl)).transaction).toBeFalsy();
  expect(recorder.callsFor(lost)).toEqual([]);
  // the topic DTM read before stays known: only what it has not read yet is lost
  const again = await app.client.generateGid();
  expect((await app.client.newMsg(again).addTopic('found-topic', { n: 2 }).submitAndWait()).status).toBe('succeed');
});
