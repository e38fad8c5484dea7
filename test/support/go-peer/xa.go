package main

import (
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// xaAttachedWait is how long awaitXaDetached waits for a prepared XA branch still attached to the
// connection that prepared it.
const xaAttachedWait = 2 * time.Second

// awaitXaDetached runs, before the SDK's phase 2 (op commit or rollback) of a MariaDB XA branch,
// its XA COMMIT | ROLLBACK itself, again while MariaDB says XAER_NOTA and the branch's barrier row
// (written inside the XA transaction) is locked, for up to xaAttachedWait. The SDK closes the
// connection that prepared the branch before answering, and MariaDB detaches the prepared
// transaction from it a moment later: a phase 2 arriving before that gets XAER_NOTA, which the
// SDK's XaHandlePhase2 (dtmimp, v1.19.0) takes for a repeated phase 2 and answers success: DTM
// records the branch done while its prepared transaction stays in MariaDB for good, holding its rows
// (every later write to them waits innodb_lock_wait_timeout, 50 s, and fails). After it, the SDK's
// phase 2 runs as before (an XAER_NOTA it then gets is a phase 2 done here, or an unknown branch).
func awaitXaDetached(db *sql.DB, table, gid, branchID, op string) {
	if op != "commit" && op != "rollback" {
		return
	}
	stmt := fmt.Sprintf("XA %s '%s-%s'", strings.ToUpper(op), gid, branchID)
	for deadline := time.Now().Add(xaAttachedWait); ; {
		_, err := db.Exec(stmt)
		if err == nil || !strings.Contains(err.Error(), "XAER_NOTA") || time.Now().After(deadline) || !barrierRowLocked(db, table, gid, branchID) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// barrierRowLocked says whether the XA branch's barrier row (op action, barrier 01) is locked by
// another transaction: a prepared XA transaction, attached or not, holds it.
func barrierRowLocked(db *sql.DB, table, gid, branchID string) bool {
	var one int
	err := db.QueryRow("SELECT 1 FROM "+table+" WHERE gid = ? AND branch_id = ? AND op = 'action' AND barrier_id = '01' FOR UPDATE NOWAIT", gid, branchID).Scan(&one)
	return err != nil && err != sql.ErrNoRows
}
