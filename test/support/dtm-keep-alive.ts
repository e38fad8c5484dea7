import type { Server } from 'node:http';
import type { INestApplication } from '@nestjs/common';

/**
 * Has `app`'s HTTP server keep an idle connection 95 s, as the Quick start does
 * (docs/errors-and-troubleshooting.md): longer than DTM's HTTP client keeps one (90 s), so that no
 * call of DTM's is sent on a connection Node closes just then (Node's default is 5 s), which DTM
 * would only send again at its retry, 10 s or more later. Call it before `listen()`, on an app made
 * with `forceCloseConnections: true` (or `app.close()` waits up to 95 s for a connection in use as it began).
 */
export function keepConnectionsForDtm(app: INestApplication): void {
  (app.getHttpServer() as Server).keepAliveTimeout = 95_000;
}
