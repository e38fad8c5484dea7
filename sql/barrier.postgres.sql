-- The sub-transaction barrier table of nestjs-dtm (postgres), default name dtm_barrier.barrier.
-- Idempotent. ensureBarrierSchema(db) runs the same statements (test/unit/barrier-sql.spec.ts keeps them equal).
CREATE SCHEMA IF NOT EXISTS "dtm_barrier";

CREATE TABLE IF NOT EXISTS "dtm_barrier"."barrier" (
  trans_type varchar(45) NOT NULL DEFAULT '',
  gid varchar(128) NOT NULL DEFAULT '',
  branch_id varchar(128) NOT NULL DEFAULT '',
  op varchar(45) NOT NULL DEFAULT '',
  barrier_id varchar(45) NOT NULL DEFAULT '',
  reason varchar(45) NOT NULL DEFAULT '',
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT uniq_barrier PRIMARY KEY (gid, branch_id, op, barrier_id)
);
