import { Injectable } from '@nestjs/common';
import { DtmClient } from '../client/dtm.client.js';
import type { DtmProtocol } from '../errors/dtm-error.js';
import { messageOf } from '../errors/text-of.js';

/** What {@link DtmHealthIndicator.isHealthy} reports under its key: a `@nestjs/terminus` `HealthIndicatorResult` entry. */
export type DtmHealthDetails =
  | { status: 'up'; version: string; protocol: DtmProtocol; latencyMs: number }
  | { status: 'up'; enabled: false; protocol: DtmProtocol; message: string }
  | { status: 'down'; protocol: DtmProtocol; message: string };

/**
 * A `@nestjs/terminus` health indicator for the DTM server (terminus 11 and 12 read its result; the
 * package does not import terminus): `() => dtmHealth.isHealthy('dtm')` in `HealthCheckService.check`.
 * Up with DTM's version and the latency of one call on `lynx.dtm.protocol`; down within
 * `lynx.dtm.timeout` when DTM does not answer. It creates nothing on the server (see `DtmClient.ping`).
 * With `lynx.dtm.enabled: false` the app does not use DTM, so it is `up` with `enabled: false` and calls nothing.
 */
@Injectable()
export class DtmHealthIndicator {
  constructor(private readonly dtm: DtmClient) {}

  /** `{ [key]: { status: 'up', version, protocol, latencyMs } }`, or `{ [key]: { status: 'down', protocol, message } }` (`up` with `enabled: false` when DTM is switched off); never throws. */
  async isHealthy<const Key extends string = 'dtm'>(key: Key = 'dtm' as Key): Promise<Record<Key, DtmHealthDetails>> {
    const protocol = this.dtm.config.protocol;
    const result = (details: DtmHealthDetails) => ({ [key]: details }) as Record<Key, DtmHealthDetails>;
    if (!this.dtm.enabled) return result({ status: 'up', enabled: false, protocol, message: 'lynx.dtm.enabled is false: this app does not use DTM' });
    const ms = this.dtm.config.timeout * 1000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const ping = await Promise.race([
        this.dtm.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`DTM did not answer within ${ms} ms (lynx.dtm.timeout)`)), ms);
        }),
      ]);
      return result({ status: 'up', version: ping.version, protocol: ping.protocol, latencyMs: ping.latencyMs });
    } catch (err) {
      return result({ status: 'down', protocol, message: messageOf(err) });
    } finally {
      clearTimeout(timer);
    }
  }
}
