// go-peer: a Go service written with DTM's own Go SDK (dtmcli v1.19.0), the other side of
// nestjs-dtm's wire-compatibility tests (test/e2e/go-interop.spec.ts) and of
// `npm run bench:barrier -- --go`.
//
// Over HTTP, as a resource manager it serves branches guarded by dtmcli's barrier (PostgreSQL and
// MariaDB) and an XA branch (dtmcli.XaLocalTransaction on MariaDB); as an application it starts
// sagas, TCC, XA and message transactions with dtmcli whose branches are nestjs-dtm handlers.
// Over gRPC it does the same with dtmgrpc: see grpc.go (service bank.GoBank of bank.proto, and the
// HTTP endpoints /ap/grpc/{saga,tcc,xa,msg} that start transactions through DTM's gRPC API).
// As a workflow application (DTM's workflow SDK over HTTP) it runs the workflow go-transfer, whose
// steps are nestjs-dtm handlers: see workflow.go (POST /ap/workflow, DTM's callback /workflow/resume).
//
// Environment: PG_URL, MYSQL_URL (postgres:// and mysql:// URLs), REDIS_URL (optional: the msg
// barrier's Redis store), NEST_URL and NEST_GRPC (optional: nestjs-dtm's routes under /nest and its
// gRPC server, host:port, for the Tries that nest a nestjs-dtm Try), DTM_URL (DTM's HTTP API, for the
// transactions it starts), DTM_GRPC (DTM's gRPC API, host:port, for the ones /ap/grpc/* starts),
// BARRIER_TABLE (default dtm_barrier), PORT and GRPC_PORT (default: any free port; both on 127.0.0.1).
// Prints "grpc port N", then "port N" once both listen. Built by scripts/setup.sh (cached).
package main

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/dtm-labs/dtm/client/dtmcli"
	"github.com/dtm-labs/dtm/client/dtmcli/dtmimp"
	"github.com/go-resty/resty/v2"
	"github.com/go-sql-driver/mysql"
	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"
)

// selfURL is this peer's HTTP address (http://127.0.0.1:port), set once it listens.
var selfURL string

// store is one database the branches write to.
type store struct {
	db          *sql.DB
	dbType      string
	withdrawSQL string // $amount, $account, $amount in the driver's placeholders
	depositSQL  string // $amount, $account
}

func newStore(db *sql.DB, dbType string, placeholders func(string) string) store {
	return store{db, dbType,
		placeholders("UPDATE account SET balance = balance - ? WHERE id = ? AND balance >= ?"),
		placeholders("UPDATE account SET balance = balance + ? WHERE id = ?")}
}

// withdraw takes amount from account; FAILURE when its balance is lower.
func (s store) withdraw(tx *sql.Tx, account, amount int64) error {
	res, err := tx.Exec(s.withdrawSQL, amount, account, amount)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return dtmcli.ErrorMessage2Error(fmt.Sprintf("go: account %d has less than %d", account, amount), dtmcli.ErrFailure)
	}
	return nil
}

// deposit adds amount to account.
func (s store) deposit(tx *sql.Tx, account, amount int64) error {
	_, err := tx.Exec(s.depositSQL, amount, account)
	return err
}

// xaDeposit is the XA branches' business, inside the XA transaction dtmcli/dtmgrpc opened on db.
func xaDeposit(db *sql.DB, account, amount int64, fail bool) error {
	if _, err := db.Exec("UPDATE account SET balance = balance + ? WHERE id = ?", amount, account); err != nil {
		return err
	}
	if fail {
		return dtmcli.ErrorMessage2Error("go: xa branch refused", dtmcli.ErrFailure)
	}
	return nil
}

// noop is the business of the Noop branches: success, but for account 91 ONGOING and for account
// 92 a plain error (neither FAILURE nor ONGOING), as a Go branch answers them.
func noop(account int) error {
	switch account {
	case 91:
		return dtmcli.ErrorMessage2Error("go: not yet", dtmcli.ErrOngoing)
	case 92:
		return errors.New("go: plain error")
	}
	return nil
}

// move is a branch body: add amount to account (withdraw: take it), optionally refusing.
type move struct {
	Account int  `json:"account"`
	Amount  int  `json:"amount"`
	Fail    bool `json:"fail"`
	ID      int  `json:"id"` // the benchmark's body: the row to add 1 to
}

func main() {
	table := os.Getenv("BARRIER_TABLE")
	if table == "" {
		table = "dtm_barrier"
	}
	dtmcli.SetBarrierTableName(table) // the XA branch's barrier row goes there too
	if raw := os.Getenv("REDIS_URL"); raw != "" {
		opts, err := redis.ParseURL(raw)
		check(err)
		rdb = redis.NewClient(opts)
	}
	pg, err := sql.Open("postgres", postgresDSN(os.Getenv("PG_URL")))
	check(err)
	my, err := sql.Open("mysql", mysqlConfig(os.Getenv("MYSQL_URL")).FormatDSN())
	check(err)
	stores := map[string]store{
		"pg":    newStore(pg, dtmcli.DBTypePostgres, dollarPlaceholders),
		"mysql": newStore(my, dtmcli.DBTypeMysql, func(s string) string { return s }),
	}
	mux := http.NewServeMux()
	for name, s := range stores {
		s.db.SetMaxOpenConns(32)
		s.db.SetMaxIdleConns(32)
		// resource manager: barrier-guarded branches
		mux.HandleFunc("POST /rm/"+name+"/withdraw", branch(s, table, func(tx *sql.Tx, m move) error {
			return s.withdraw(tx, int64(m.Account), int64(m.Amount))
		}))
		mux.HandleFunc("POST /rm/"+name+"/deposit", branch(s, table, func(tx *sql.Tx, m move) error {
			return s.deposit(tx, int64(m.Account), int64(m.Amount))
		}))
		// a message's back-check: did the local transaction that inserted the barrier row commit?
		mux.HandleFunc("/rm/"+name+"/query-prepared", func(w http.ResponseWriter, r *http.Request) {
			bb, err := dtmcli.BarrierFromQuery(r.URL.Query())
			if err == nil {
				bb.DBType = s.dbType
				bb.BarrierTableName = table
				err = bb.QueryPrepared(s.db)
			}
			answer(w, nil, err)
		})
		// the benchmark's pair: one UPDATE behind the barrier, and the same without it
		mux.HandleFunc("POST /"+name+"/with", branch(s, table, func(tx *sql.Tx, m move) error {
			return s.deposit(tx, int64(m.ID), 1)
		}))
		mux.HandleFunc("POST /"+name+"/without", func(w http.ResponseWriter, r *http.Request) {
			m, err := readMove(r)
			if err == nil {
				var tx *sql.Tx
				if tx, err = s.db.Begin(); err == nil {
					if err = s.deposit(tx, int64(m.ID), 1); err == nil {
						err = tx.Commit()
					} else {
						_ = tx.Rollback()
					}
				}
			}
			answer(w, nil, err)
		})
	}
	// a message's back-check on Redis: did the local work that wrote the key <gid>-00-msg-01 happen?
	mux.HandleFunc("/rm/redis/query-prepared", func(w http.ResponseWriter, r *http.Request) {
		bb, err := dtmcli.BarrierFromQuery(r.URL.Query())
		if err == nil {
			err = bb.RedisQueryPrepared(rdb, 86400)
		}
		answer(w, nil, err)
	})
	mux.HandleFunc("POST /rm/noop", func(w http.ResponseWriter, r *http.Request) {
		m, err := readMove(r)
		if err == nil {
			err = noop(m.Account)
		}
		answer(w, nil, err)
	})
	// a nested TCC Try (dtmcli.TccFromQuery): registers and tries its own sub-branch, this peer's
	// MariaDB withdraw (confirm: noop, cancel: deposit), with the move it got
	mux.HandleFunc("POST /rm/nested/try", func(w http.ResponseWriter, r *http.Request) {
		m, err := readMove(r)
		var tcc *dtmcli.Tcc
		if err == nil {
			tcc, err = dtmcli.TccFromQuery(r.URL.Query())
		}
		if err == nil {
			_, err = tcc.CallBranch(m, selfURL+"/rm/mysql/withdraw", selfURL+"/rm/noop", selfURL+"/rm/mysql/deposit")
		}
		answer(w, nil, err)
	})
	// a nested TCC Try whose sub-branch is nestjs-dtm's nested Try (NEST_URL: /nested-try, which
	// nests a TCC of its own: three levels), with the move it got
	mux.HandleFunc("POST /rm/nested/try-nest", func(w http.ResponseWriter, r *http.Request) {
		m, err := readMove(r)
		var tcc *dtmcli.Tcc
		if err == nil {
			tcc, err = dtmcli.TccFromQuery(r.URL.Query())
		}
		if err == nil {
			nest := os.Getenv("NEST_URL")
			_, err = tcc.CallBranch(m, nest+"/nested-try", nest+"/nested-confirm", nest+"/nested-cancel")
		}
		answer(w, nil, err)
	})
	xaConf := xaDBConf(os.Getenv("MYSQL_URL"))
	mux.HandleFunc("POST /rm/mysql/xa-deposit", func(w http.ResponseWriter, r *http.Request) {
		m, err := readMove(r)
		if err == nil {
			q := r.URL.Query()
			awaitXaDetached(my, table, q.Get("gid"), q.Get("branch_id"), q.Get("op"))
			err = dtmcli.XaLocalTransaction(q, xaConf, func(db *sql.DB, xa *dtmcli.Xa) error {
				return xaDeposit(db, int64(m.Account), int64(m.Amount), m.Fail)
			})
		}
		answer(w, nil, err)
	})

	// application: transactions started with dtmcli, their branches given as URLs
	dtm := os.Getenv("DTM_URL")
	mux.HandleFunc("POST /ap/saga", start(func(req apRequest) error {
		saga := dtmcli.NewSaga(dtm, req.Gid)
		req.options(&saga.TransBase)
		req.sagaOptions(saga)
		for _, b := range req.Branches {
			saga.Add(b.Action, b.Compensate, b.Payload)
		}
		return saga.Submit()
	}))
	mux.HandleFunc("POST /ap/msg", start(func(req apRequest) error {
		msg := dtmcli.NewMsg(dtm, req.Gid)
		req.options(&msg.TransBase)
		for _, b := range req.Branches {
			msg.Add(b.Action, b.Payload)
		}
		if req.QueryPrepared == "" {
			return msg.Submit()
		}
		if req.BusinessError || req.CrashAfterCommit {
			// the local work fails with an error that is no FAILURE: the SDK asks queryPrepared itself
			return msg.DoAndSubmit(req.QueryPrepared, req.localWork(stores, table))
		}
		if err := msg.Prepare(req.QueryPrepared); err != nil {
			return err
		}
		return req.prepared(stores, table, msg.Submit)
	}))
	mux.HandleFunc("POST /ap/tcc", start(func(req apRequest) error {
		return dtmcli.TccGlobalTransaction(dtm, req.Gid, func(tcc *dtmcli.Tcc) (*resty.Response, error) {
			for _, b := range req.Branches {
				if _, err := tcc.CallBranch(b.Payload, b.Try, b.Confirm, b.Cancel); err != nil {
					return nil, err
				}
			}
			return nil, nil
		})
	}))
	mux.HandleFunc("POST /ap/xa", start(func(req apRequest) error {
		return dtmcli.XaGlobalTransaction2(dtm, req.Gid, func(xa *dtmcli.Xa) {
			req.options(&xa.TransBase)
		}, func(xa *dtmcli.Xa) (*resty.Response, error) {
			for _, b := range req.Branches {
				if _, err := xa.CallBranch(b.Payload, b.Action); err != nil {
					return nil, err
				}
			}
			req.crash()
			return nil, nil
		})
	}))

	// the same over gRPC: bank.GoBank, and /ap/grpc/* on this mux
	serveGrpc(mux, stores, table, xaConf, os.Getenv("DTM_GRPC"))
	// a workflow (DTM's workflow SDK, HTTP): /ap/workflow and DTM's resume callback /workflow/resume
	serveWorkflow(mux)

	listener, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	check(err)
	selfURL = "http://" + listener.Addr().String()
	initWorkflow(dtm, listener) // the callback URL needs the port
	fmt.Printf("port %d\n", listener.Addr().(*net.TCPAddr).Port)
	log.Fatal(http.Serve(listener, mux))
}

// branch serves a barrier-guarded branch: dtmcli reads the branch from the query DTM sent.
func branch(s store, table string, business func(*sql.Tx, move) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m, err := readMove(r)
		if err == nil {
			var bb *dtmcli.BranchBarrier
			if bb, err = dtmcli.BarrierFromQuery(r.URL.Query()); err == nil {
				bb.DBType = s.dbType
				bb.BarrierTableName = table
				err = bb.CallWithDB(s.db, func(tx *sql.Tx) error { return business(tx, m) })
			}
		}
		answer(w, nil, err)
	}
}

// apRequest asks the peer to start one transaction: saga and msg steps use Action (and
// Compensate), TCC branches Try/Confirm/Cancel, XA branches Action. Over HTTP every URL is a
// dtmcli branch URL, over gRPC (/ap/grpc/*) a target host:port/package.Service/Method.
type apRequest struct {
	Gid      string `json:"gid"`
	Branches []struct {
		Action     string `json:"action"`
		Compensate string `json:"compensate"`
		Try        string `json:"try"`
		Confirm    string `json:"confirm"`
		Cancel     string `json:"cancel"`
		Payload    move   `json:"payload"`
	} `json:"branches"`
	QueryPrepared string            `json:"queryPrepared"` // msg: Prepare with it, then Submit
	BranchHeaders map[string]string `json:"branchHeaders"`
	// msg with queryPrepared: LocalCommit commits a local transaction holding the message's barrier
	// row (branch 00, op msg) on PostgreSQL after the prepare, as DoAndSubmitDB does; PrepareOnly then
	// stops there (an AP that died before its submit): DTM's back-check decides
	LocalCommit   bool `json:"localCommit"`
	PrepareOnly   bool `json:"prepareOnly"`
	BusinessError bool `json:"businessError"` // msg: DoAndSubmit whose local transaction (behind the barrier) returns a plain error
	// msg: DoAndSubmit whose local work commits (its barrier row / key written), then a plain error
	CrashAfterCommit bool `json:"crashAfterCommit"`
	// msg: where DoAndSubmit's local work and LocalCommit write the message's barrier: "pg"
	// (default), "mysql", or "redis" (RedisCheckAdjustAmount of amount on the key RedisKey)
	Store         string `json:"store"`
	RedisKey      string `json:"redisKey"`
	Amount        int    `json:"amount"`
	TimeoutToFail int64  `json:"timeoutToFail"` // the transaction's options, as the SDK sets them
	RetryInterval int64  `json:"retryInterval"`
	// xa: the process exits (status 3, as a crash) once every branch answered, before the submit
	CrashBeforeSubmit bool `json:"crashBeforeSubmit"`
	// saga: SetConcurrent, and AddBranchOrder(step, preSteps) for each entry
	Concurrent bool          `json:"concurrent"`
	Orders     map[int][]int `json:"orders"`
}

// crash ends the process at once when req asks for it (CrashBeforeSubmit): an AP that died mid-way.
func (req apRequest) crash() {
	if req.CrashBeforeSubmit {
		log.Printf("crashing before the submit of %s, as asked", req.Gid)
		os.Exit(3)
	}
}

// sagaOptions sets req's concurrency and branch orders on saga.
func (req apRequest) sagaOptions(saga *dtmcli.Saga) {
	if req.Concurrent {
		saga.SetConcurrent()
	}
	for step, pre := range req.Orders {
		saga.AddBranchOrder(step, pre)
	}
}

// options sets req's transaction options on tb.
func (req apRequest) options(tb *dtmimp.TransBase) {
	tb.BranchHeaders = req.BranchHeaders
	tb.TimeoutToFail = req.TimeoutToFail
	tb.RetryInterval = req.RetryInterval
}

// rdb is the Redis the msg barrier's "redis" store writes to (REDIS_URL), nil without one.
var rdb *redis.Client

// localWork is DoAndSubmit's local work on req's store: behind the barrier (msg, 00, msg), a plain
// error before the commit (BusinessError) or after it (CrashAfterCommit).
func (req apRequest) localWork(stores map[string]store, table string) func(*dtmcli.BranchBarrier) error {
	return func(bb *dtmcli.BranchBarrier) error {
		if req.BusinessError {
			if req.Store != "redis" {
				s := stores[orPg(req.Store)]
				bb.DBType = s.dbType
				bb.BarrierTableName = table
				return bb.CallWithDB(s.db, func(*sql.Tx) error { return errors.New("go: local transaction crashed") })
			}
			return errors.New("go: local transaction crashed")
		}
		if err := req.commitLocal(bb, stores, table); err != nil {
			return err
		}
		return errors.New("go: crashed after the commit")
	}
}

// commitLocal commits the message's local work behind bb on req's store.
func (req apRequest) commitLocal(bb *dtmcli.BranchBarrier, stores map[string]store, table string) error {
	if req.Store == "redis" {
		return bb.RedisCheckAdjustAmount(rdb, req.RedisKey, req.Amount, 86400)
	}
	s := stores[orPg(req.Store)]
	bb.DBType = s.dbType
	bb.BarrierTableName = table
	return bb.CallWithDB(s.db, func(*sql.Tx) error { return nil })
}

func orPg(name string) string {
	if name == "" {
		return "pg"
	}
	return name
}

// prepared runs what follows a message's prepare: with LocalCommit, a local transaction holding its
// barrier row on s commits; with PrepareOnly, no submit follows (DTM's back-check decides).
func (req apRequest) prepared(stores map[string]store, table string, submit func() error) error {
	if req.LocalCommit {
		bb, err := dtmcli.BarrierFrom("msg", req.Gid, "00", "msg")
		if err != nil {
			return err
		}
		if err := req.commitLocal(bb, stores, table); err != nil {
			return err
		}
	}
	if req.PrepareOnly {
		return nil
	}
	return submit()
}

// start serves an /ap/* endpoint: 200 once DTM took the transaction, else the error as dtmcli
// answers it (FAILURE → 409).
func start(run func(apRequest) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req apRequest
		err := json.NewDecoder(r.Body).Decode(&req)
		if err == nil {
			err = run(req)
		}
		answer(w, map[string]string{"gid": req.Gid}, err)
	}
}

// readMove reads a branch body; an empty one (DTM's XA phase 2 sends none) is the zero move.
func readMove(r *http.Request) (move, error) {
	var m move
	err := json.NewDecoder(r.Body).Decode(&m)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return m, err
}

// answer writes what dtmcli's own HTTP helpers would: 200 with the result, 409 FAILURE, 425 ONGOING, else 500.
func answer(w http.ResponseWriter, result any, err error) {
	if err != nil && !errors.Is(err, dtmcli.ErrFailure) {
		log.Printf("branch error: %v", err)
	}
	var body any = result
	if err != nil {
		body = err
	}
	code, res := dtmcli.Result2HttpJSON(body)
	if res == nil {
		res = map[string]string{"dtm_result": dtmcli.ResultSuccess}
	}
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(res)
}

func dollarPlaceholders(s string) string {
	out, n := []byte{}, 0
	for i := 0; i < len(s); i++ {
		if s[i] == '?' {
			n++
			out = append(out, '$')
			out = strconv.AppendInt(out, int64(n), 10)
		} else {
			out = append(out, s[i])
		}
	}
	return string(out)
}

// postgresDSN adds sslmode=disable (lib/pq's default is to require TLS; the harness's server has none).
func postgresDSN(raw string) string {
	u, err := url.Parse(raw)
	check(err)
	q := u.Query()
	if q.Get("sslmode") == "" {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// mysqlConfig reads mysql://user:password@host:port/db.
func mysqlConfig(raw string) *mysql.Config {
	u, err := url.Parse(raw)
	check(err)
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	cfg.DBName = u.Path[1:]
	return cfg
}

// xaDBConf is the same database as dtmcli's XA wants it.
func xaDBConf(raw string) dtmcli.DBConf {
	u, err := url.Parse(raw)
	check(err)
	port, err := strconv.ParseInt(u.Port(), 10, 64)
	check(err)
	password, _ := u.User.Password()
	return dtmcli.DBConf{Driver: dtmcli.DBTypeMysql, Host: u.Hostname(), Port: port, User: u.User.Username(), Password: password, Db: u.Path[1:]}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
