import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { barrierBinaryKeysSql, barrierSchemaSql, BranchBarrier, DtmUsageError, typeormBarrierTransaction } from 'nestjs-dtm';

const root = resolve(import.meta.dirname, '..', '..');

/** The statements of a .sql file: comment lines dropped, split on `;` at line ends. */
function statements(file: string): string[] {
  return readFileSync(join(root, 'sql', file), 'utf8')
    .split('\n')
    .filter((line) => !line.startsWith('--'))
    .join('\n')
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter(Boolean);
}

describe('the barrier DDL', () => {
  it('sql/ holds exactly what ensureBarrierSchema runs for the default table', () => {
    expect(statements('barrier.postgres.sql')).toEqual(barrierSchemaSql('postgres'));
    expect(statements('barrier.mysql.sql')).toEqual(barrierSchemaSql('mysql'));
  });

  it('sql/ holds the migration to binary key columns that ensureBarrierSchema names', () => {
    expect(statements('barrier.mysql.binary-keys.sql')).toEqual([barrierBinaryKeysSql()]);
  });

  it('MySQL / MariaDB: the key columns are binary strings (exact), PostgreSQL keeps varchar (exact there)', () => {
    const mysql = barrierSchemaSql('mysql').join('\n');
    for (const column of ['gid varbinary(128)', 'branch_id varbinary(128)', 'op varbinary(45)', 'barrier_id varbinary(45)', 'reason varchar(45)']) expect(mysql).toContain(column);
    expect(mysql).not.toMatch(/(gid|branch_id|op|barrier_id) varchar/);
    expect(barrierSchemaSql('postgres').join('\n')).toContain('gid varchar(128)');
    expect(barrierBinaryKeysSql('orders.barrier')).toBe(
      "ALTER TABLE `orders`.`barrier`\n  MODIFY gid varbinary(128) NOT NULL DEFAULT '',\n  MODIFY branch_id varbinary(128) NOT NULL DEFAULT '',\n  MODIFY op varbinary(45) NOT NULL DEFAULT '',\n  MODIFY barrier_id varbinary(45) NOT NULL DEFAULT ''",
    );
  });

  it('names the PostgreSQL key constraint uniq_barrier, as DTM\'s SDKs name it in their insert, whatever the table', () => {
    expect(barrierSchemaSql('postgres').join('\n')).toContain('CONSTRAINT uniq_barrier PRIMARY KEY (gid, branch_id, op, barrier_id)');
    expect(barrierSchemaSql('postgres', 'orders.barrier_a').join('\n')).toContain('CONSTRAINT uniq_barrier PRIMARY KEY (gid, branch_id, op, barrier_id)');
    expect(barrierSchemaSql('mysql', 'orders.barrier')).toEqual([expect.stringContaining('CREATE DATABASE IF NOT EXISTS `orders`'), expect.stringContaining('`orders`.`barrier`')]);
  });

  it('quotes each part of the table name, so a reserved word is a name; PostgreSQL gets the lower-case name it folds an unquoted one to', () => {
    expect(barrierSchemaSql('postgres', 'order')).toEqual([expect.stringContaining('CREATE TABLE IF NOT EXISTS "order" (')]);
    expect(barrierSchemaSql('postgres', 'User.Barrier')).toEqual(['CREATE SCHEMA IF NOT EXISTS "user"', expect.stringContaining('CREATE TABLE IF NOT EXISTS "user"."barrier" (')]);
    expect(barrierSchemaSql('mysql', 'Shop.order')).toEqual(['CREATE DATABASE IF NOT EXISTS `Shop`', expect.stringContaining('CREATE TABLE IF NOT EXISTS `Shop`.`order` (')]);
  });

  it('refuses table names that are not plain identifiers', () => {
    expect(() => barrierSchemaSql('postgres', 'x; drop table y')).toThrow(/must be name or schema.name/);
    expect(() => barrierBinaryKeysSql('x; drop table y')).toThrow(/must be name or schema.name/);
    expect(() => new BranchBarrier('saga', 'g', '01', 'action', { table: 'a.b.c' })).toThrow(/must be name or schema.name/);
  });
});

describe('MySQL / MariaDB statements with values go to the server as prepared statements', () => {
  it('TypeORM on a driver without prepared statements (the old mysql package) is refused, never quoted on the client', async () => {
    const queried: string[] = [];
    const runner = {
      startTransaction: async () => undefined,
      query: async (sql: string) => {
        queried.push(sql);
        return {};
      },
      connect: async () => ({ query: () => undefined }), // mysqljs: query only
    };
    const tx = typeormBarrierTransaction(runner, 'mysql');
    const error = await tx.execute('INSERT IGNORE INTO t (gid) VALUES (?)', ["x'"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toContain("use the mysql2 driver (TypeORM 0.3: connectorPackage: 'mysql2')");
    expect(queried).toEqual([]);
  });
});
