// src/main.ts
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { ensureBarrierSchema, pgBarrierDatabase } from 'nestjs-dtm';
import { AppModule, pool } from './app.module.js';

// the tables, before the app starts: the barrier's (dtm_barrier.barrier) and the accounts
await ensureBarrierSchema(pgBarrierDatabase(pool));
await pool.query('CREATE TABLE IF NOT EXISTS account (name text PRIMARY KEY, balance int NOT NULL)');
await pool.query("INSERT INTO account VALUES ('alice', 100), ('bob', 0) ON CONFLICT DO NOTHING");

const app = await NestFactory.create(AppModule, { forceCloseConnections: true });
app.enableShutdownHooks();
// DTM keeps an idle connection to the app for 90 s: Node must not close it first (5 s by default)
app.getHttpServer().keepAliveTimeout = 95_000;
await app.listen(Number(process.env.PORT ?? 3000));
