-- Migration of a barrier table created before nestjs-dtm made the key columns binary (mysql), default
-- name dtm_barrier.barrier: with a character collation, ids differing only in case, accents or
-- trailing spaces were one key, and the second branch was skipped as a duplicate.
-- Rebuilds the table (plan a quiet moment for a large one). Rows whose gid or branch_id is over 128
-- bytes (only non-ASCII ids can be) make it fail in a strict sql_mode: find them first with
--   SELECT gid, branch_id FROM dtm_barrier.barrier WHERE LENGTH(gid) > 128 OR LENGTH(branch_id) > 128;
-- ensureBarrierSchema(db) refuses a table whose key columns are not binary, naming this statement
-- (test/unit/barrier-sql.spec.ts keeps it equal to barrierBinaryKeysSql()).
ALTER TABLE `dtm_barrier`.`barrier`
  MODIFY gid varbinary(128) NOT NULL DEFAULT '',
  MODIFY branch_id varbinary(128) NOT NULL DEFAULT '',
  MODIFY op varbinary(45) NOT NULL DEFAULT '',
  MODIFY barrier_id varbinary(45) NOT NULL DEFAULT '';
