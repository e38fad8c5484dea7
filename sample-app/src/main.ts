import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

/** Starts the sample app on PORT (default 3000). */
async function bootstrap(): Promise<void> {
  // forceCloseConnections: app.close() ends DTM's kept-alive connections too, instead of waiting them out
  const app = await NestFactory.create(AppModule, { forceCloseConnections: true });
  // DTM keeps an idle connection to the app for 90 s: Node must not close it first (5 s by default)
  app.getHttpServer().keepAliveTimeout = 95_000;
  await app.listen(Number(process.env.PORT ?? 3000));
}

await bootstrap();
