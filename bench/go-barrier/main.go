// The Go side of bench/barrier-overhead (--go): the same branches as barrier-overhead.app.ts, written
// with DTM's own Go SDK (dtmcli's BranchBarrier) and database/sql, so that the barrier's cost through
// nestjs-dtm can be set beside its cost through DTM's SDK on the same machine, databases and DTM.
//
// Per store two saga actions doing one UPDATE in a local transaction: /<store>/with behind
// dtmcli's barrier (CallWithDB), /<store>/without not. Environment: PG_URL, MYSQL_URL (mysql://
// URLs as the Node app gets them). Prints "port N" once it listens.
package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"

	"github.com/dtm-labs/dtm/client/dtmcli"
	"github.com/go-sql-driver/mysql"
	_ "github.com/lib/pq"
)

type store struct {
	db     *sql.DB
	dbType string
	update string
}

func main() {
	pg, err := sql.Open("postgres", postgresDSN(os.Getenv("PG_URL")))
	check(err)
	my, err := sql.Open("mysql", mysqlDSN(os.Getenv("MYSQL_URL")))
	check(err)
	stores := map[string]store{
		"pg":    {pg, dtmcli.DBTypePostgres, "UPDATE account SET balance = balance + 1 WHERE id = $1"},
		"mysql": {my, dtmcli.DBTypeMysql, "UPDATE account SET balance = balance + 1 WHERE id = ?"},
	}
	mux := http.NewServeMux()
	for name, s := range stores {
		s.db.SetMaxOpenConns(32)
		s.db.SetMaxIdleConns(32)
		mux.HandleFunc("POST /"+name+"/with", func(w http.ResponseWriter, r *http.Request) {
			id, err := readID(r)
			if err == nil {
				var bb *dtmcli.BranchBarrier
				if bb, err = dtmcli.BarrierFromQuery(r.URL.Query()); err == nil {
					bb.DBType = s.dbType
					bb.BarrierTableName = "dtm_barrier"
					err = bb.CallWithDB(s.db, func(tx *sql.Tx) error {
						_, err := tx.Exec(s.update, id)
						return err
					})
				}
			}
			answer(w, err)
		})
		mux.HandleFunc("POST /"+name+"/without", func(w http.ResponseWriter, r *http.Request) {
			id, err := readID(r)
			if err == nil {
				var tx *sql.Tx
				if tx, err = s.db.Begin(); err == nil {
					if _, err = tx.Exec(s.update, id); err == nil {
						err = tx.Commit()
					} else {
						_ = tx.Rollback()
					}
				}
			}
			answer(w, err)
		})
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	fmt.Printf("port %d\n", listener.Addr().(*net.TCPAddr).Port)
	log.Fatal(http.Serve(listener, mux))
}

func readID(r *http.Request) (int, error) {
	var body struct{ ID int }
	err := json.NewDecoder(r.Body).Decode(&body)
	return body.ID, err
}

func answer(w http.ResponseWriter, err error) {
	w.Header().Set("content-type", "application/json")
	if err != nil {
		log.Printf("branch error: %v", err)
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"error":%q}`, err.Error())
		return
	}
	fmt.Fprint(w, `{"dtm_result":"SUCCESS"}`)
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

// mysqlDSN turns mysql://user:password@host:port/db into the driver's user:password@tcp(host:port)/db.
func mysqlDSN(raw string) string {
	u, err := url.Parse(raw)
	check(err)
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	cfg.DBName = u.Path[1:]
	return cfg.FormatDSN()
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
