-- The sub-transaction barrier table of nestjs-dtm (mysql), default name dtm_barrier.barrier.
-- Idempotent. ensureBarrierSchema(db) runs the same statements (test/unit/barrier-sql.spec.ts keeps them equal).
-- The key columns are varbinary: compared byte for byte (no case, accent or trailing-space folding).
-- A table created before: see barrier.mysql.binary-keys.sql.
CREATE DATABASE IF NOT EXISTS `dtm_barrier`;

CREATE TABLE IF NOT EXISTS `dtm_barrier`.`barrier` (
  trans_type varchar(45) NOT NULL DEFAULT '',
  gid varbinary(128) NOT NULL DEFAULT '',
  branch_id varbinary(128) NOT NULL DEFAULT '',
  op varbinary(45) NOT NULL DEFAULT '',
  barrier_id varbinary(45) NOT NULL DEFAULT '',
  reason varchar(45) NOT NULL DEFAULT '',
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (gid, branch_id, op, barrier_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
