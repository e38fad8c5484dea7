import pg from 'pg';
import { pgXaDatabase, type XaDatabase } from 'nestjs-dtm';

/** An XA database on the PostgreSQL database at `url`: each XA branch on a client of its own, as `pgXaDatabase` asks. */
export function pgXaAt(url: string | undefined): XaDatabase<pg.Client> {
  return pgXaDatabase(async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    return client;
  });
}
