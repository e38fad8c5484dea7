// The go-peer over gRPC, written with DTM's dtmgrpc SDK (v1.19.0).
//
// Resource manager: the service bank.GoBank of bank.proto (embedded, compiled at start with
// protocompile; no generated code), served by grpc-go with a hand-built grpc.ServiceDesc whose
// handlers decode the request into a dynamicpb bank.Move. Branches run behind dtmgrpc's barrier
// (BarrierFromGrpc), the XA one with dtmgrpc.XaLocalTransaction (it registers the branch with the
// DTM gRPC address the AP put in the `dtm-dtm` metadata); errors are mapped with
// dtmgrpc.DtmError2GrpcError (FAILURE → ABORTED, ONGOING → FAILED_PRECONDITION).
//
// DTM calls branches with content-type application/grpc+dtm_raw (its client forces a raw codec
// named "dtm_raw"). No "dtm_raw" codec is registered here (nor anywhere in dtm), and none is
// needed: a grpc-go server with no codec registered for the content-subtype falls back to the proto
// codec (grpc-go v1.56.3 server.go getCodec), and the bytes DTM sends are plain protobuf.
//
// Application: POST /ap/grpc/{saga,tcc,xa,msg} on the HTTP mux start transactions through DTM's
// gRPC API (DTM_GRPC) with dtmgrpc. Body: {gid, branches: [{action, compensate, try, confirm,
// cancel, payload: {account, amount, fail}}], queryPrepared?, branchHeaders?}, every URL a gRPC
// target host:port/package.Service/Method, every payload sent as a bank.Move. Answers like /ap/*:
// 200 {"gid"}, 409 FAILURE, 425 ONGOING, else 500 (an error status from DTM or from a TCC try /
// XA action the AP called is read with dtmgrpc.GrpcError2DtmError first).
//
// Environment: GRPC_PORT (default: any free port), on 127.0.0.1; prints "grpc port N" once it listens.
package main

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/bufbuild/protocompile"
	"github.com/dtm-labs/dtm/client/dtmcli"
	"github.com/dtm-labs/dtm/client/dtmgrpc"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/emptypb"
)

//go:embed bank.proto
var bankProto string

// bankMove is bank.Move, from bank.proto compiled at start.
var bankMove protoreflect.MessageDescriptor

// loadBank compiles the embedded bank.proto (google/protobuf/empty.proto from protocompile's
// standard imports) and returns the GoBank service.
func loadBank() protoreflect.ServiceDescriptor {
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			Accessor: protocompile.SourceAccessorFromMap(map[string]string{"bank.proto": bankProto}),
		}),
	}
	files, err := compiler.Compile(context.Background(), "bank.proto")
	check(err)
	bankMove = files[0].Messages().ByName("Move")
	service := files[0].Services().ByName("GoBank")
	if bankMove == nil || service == nil {
		log.Fatal("bank.proto: no bank.Move or bank.GoBank")
	}
	return service
}

// newMove is m as a bank.Move, for dtmgrpc to marshal. proto.Marshal (what dtmgrpc calls) writes
// a dynamicpb message's fields in Go map order, so the same move would give different bytes from
// one call to the next; the Move is therefore encoded here in field-number order (as generated
// code and protobufjs write it) and handed over as the unknown fields of an Empty, which
// proto.Marshal writes back verbatim: DTM stores and forwards exactly these bytes.
func newMove(m move) proto.Message {
	msg := dynamicpb.NewMessage(bankMove)
	fields := bankMove.Fields()
	msg.Set(fields.ByName("account"), protoreflect.ValueOfInt64(int64(m.Account)))
	msg.Set(fields.ByName("amount"), protoreflect.ValueOfInt64(int64(m.Amount)))
	msg.Set(fields.ByName("fail"), protoreflect.ValueOfBool(m.Fail))
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	check(err)
	carrier := &emptypb.Empty{}
	carrier.ProtoReflect().SetUnknown(b)
	return carrier
}

// grpcMove is what a GoBank method receives (a bank.Move; DTM's XA phase 2 and msg back-check send
// an empty message: the zero move).
type grpcMove struct {
	account, amount int64
	fail            bool
}

func readGrpcMove(msg *dynamicpb.Message) grpcMove {
	fields := bankMove.Fields()
	return grpcMove{
		account: msg.Get(fields.ByName("account")).Int(),
		amount:  msg.Get(fields.ByName("amount")).Int(),
		fail:    msg.Get(fields.ByName("fail")).Bool(),
	}
}

// selfGrpc is this peer's gRPC address (127.0.0.1:port), set once it listens.
var selfGrpc string

// serveGrpc listens on GRPC_PORT, serves bank.GoBank there, and adds /ap/grpc/* to mux.
func serveGrpc(mux *http.ServeMux, stores map[string]store, table string, xaConf dtmcli.DBConf, dtm string) {
	service := loadBank()
	barrier := func(s store, business func(*sql.Tx, grpcMove) error) func(context.Context, grpcMove) error {
		return func(ctx context.Context, m grpcMove) error {
			bb, err := dtmgrpc.BarrierFromGrpc(ctx)
			if err != nil {
				return err
			}
			bb.DBType = s.dbType
			bb.BarrierTableName = table
			return bb.CallWithDB(s.db, func(tx *sql.Tx) error { return business(tx, m) })
		}
	}
	queryPrepared := func(s store) func(context.Context, grpcMove) error {
		return func(ctx context.Context, _ grpcMove) error {
			bb, err := dtmgrpc.BarrierFromGrpc(ctx)
			if err != nil {
				return err
			}
			bb.DBType = s.dbType
			bb.BarrierTableName = table
			return bb.QueryPrepared(s.db)
		}
	}
	pg, my := stores["pg"], stores["mysql"]
	withdraw := func(s store) func(*sql.Tx, grpcMove) error {
		return func(tx *sql.Tx, m grpcMove) error { return s.withdraw(tx, m.account, m.amount) }
	}
	deposit := func(s store) func(*sql.Tx, grpcMove) error {
		return func(tx *sql.Tx, m grpcMove) error { return s.deposit(tx, m.account, m.amount) }
	}
	bench := func(s store) func(*sql.Tx, grpcMove) error {
		return func(tx *sql.Tx, m grpcMove) error { return s.deposit(tx, m.account, 1) }
	}
	methods := map[string]func(context.Context, grpcMove) error{
		"PgWithdraw":    barrier(pg, withdraw(pg)),
		"PgDeposit":     barrier(pg, deposit(pg)),
		"MysqlWithdraw": barrier(my, withdraw(my)),
		"MysqlDeposit":  barrier(my, deposit(my)),
		"Noop":          func(_ context.Context, m grpcMove) error { return noop(int(m.account)) },
		"MysqlXaDeposit": func(ctx context.Context, m grpcMove) error {
			if xa, err := dtmgrpc.XaGrpcFromRequest(ctx); err == nil {
				awaitXaDetached(stores["mysql"].db, table, xa.Gid, xa.BranchID, xa.Op)
			}
			return dtmgrpc.XaLocalTransaction(ctx, xaConf, func(db *sql.DB, xa *dtmgrpc.XaGrpc) error {
				return xaDeposit(db, m.account, m.amount, m.fail)
			})
		},
		"PgQueryPrepared":    queryPrepared(pg),
		"MysqlQueryPrepared": queryPrepared(my),
		"RedisQueryPrepared": func(ctx context.Context, _ grpcMove) error {
			bb, err := dtmgrpc.BarrierFromGrpc(ctx)
			if err != nil {
				return err
			}
			return bb.RedisQueryPrepared(rdb, 86400)
		},
		// a nested TCC Try (dtmgrpc.TccFromGrpc): registers and tries its own sub-branch, this peer's
		// MysqlWithdraw (confirm: Noop, cancel: MysqlDeposit), with the move it got
		"NestedTry": func(ctx context.Context, m grpcMove) error {
			tcc, err := dtmgrpc.TccFromGrpc(ctx)
			if err != nil {
				return err
			}
			self := selfGrpc + "/bank.GoBank/"
			err = tcc.CallBranch(newMove(move{Account: int(m.account), Amount: int(m.amount)}), self+"MysqlWithdraw", self+"Noop", self+"MysqlDeposit", &emptypb.Empty{})
			return dtmgrpc.GrpcError2DtmError(err)
		},
		// a nested TCC Try whose sub-branch is nestjs-dtm's bank.NestBank/NestedTry (at NEST_GRPC),
		// which nests a TCC of its own: three levels
		"NestedTryNest": func(ctx context.Context, m grpcMove) error {
			tcc, err := dtmgrpc.TccFromGrpc(ctx)
			if err != nil {
				return err
			}
			nest := os.Getenv("NEST_GRPC") + "/bank.NestBank/"
			err = tcc.CallBranch(newMove(move{Account: int(m.account), Amount: int(m.amount)}), nest+"NestedTry", nest+"NestedConfirm", nest+"NestedCancel", &emptypb.Empty{})
			return dtmgrpc.GrpcError2DtmError(err)
		},
		"PgBench":    barrier(pg, bench(pg)),
		"MysqlBench": barrier(my, bench(my)),
	}
	desc := grpc.ServiceDesc{
		ServiceName: string(service.FullName()),
		HandlerType: (*any)(nil),
		Metadata:    "bank.proto",
	}
	for i := 0; i < service.Methods().Len(); i++ {
		name := string(service.Methods().Get(i).Name())
		run := methods[name]
		if run == nil {
			log.Fatalf("bank.proto: no handler for GoBank.%s", name)
		}
		desc.Methods = append(desc.Methods, grpc.MethodDesc{MethodName: name, Handler: unaryHandler(desc.ServiceName, name, run)})
	}
	server := grpc.NewServer()
	server.RegisterService(&desc, struct{}{})
	listener, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("GRPC_PORT"))
	check(err)
	selfGrpc = listener.Addr().String()
	fmt.Printf("grpc port %d\n", listener.Addr().(*net.TCPAddr).Port)
	go func() { log.Fatal(server.Serve(listener)) }()

	mux.HandleFunc("POST /ap/grpc/saga", startGrpc(func(req apRequest) error {
		saga := dtmgrpc.NewSagaGrpc(dtm, req.Gid)
		req.options(&saga.TransBase)
		req.sagaOptions(&saga.Saga)
		for _, b := range req.Branches {
			saga.Add(b.Action, b.Compensate, newMove(b.Payload))
		}
		return saga.Submit()
	}))
	mux.HandleFunc("POST /ap/grpc/msg", startGrpc(func(req apRequest) error {
		msg := dtmgrpc.NewMsgGrpc(dtm, req.Gid)
		req.options(&msg.TransBase)
		for _, b := range req.Branches {
			msg.Add(b.Action, newMove(b.Payload))
		}
		if req.QueryPrepared == "" {
			return msg.Submit()
		}
		if req.BusinessError || req.CrashAfterCommit {
			// the local work fails with an error that is no FAILURE: the SDK asks queryPrepared itself (gRPC)
			return msg.DoAndSubmit(req.QueryPrepared, req.localWork(stores, table))
		}
		if err := msg.Prepare(req.QueryPrepared); err != nil {
			return err
		}
		return req.prepared(stores, table, msg.Submit)
	}))
	mux.HandleFunc("POST /ap/grpc/tcc", startGrpc(func(req apRequest) error {
		return dtmgrpc.TccGlobalTransaction2(dtm, req.Gid, func(tcc *dtmgrpc.TccGrpc) {
			tcc.BranchHeaders = req.BranchHeaders
		}, func(tcc *dtmgrpc.TccGrpc) error {
			for _, b := range req.Branches {
				// the reply: any message decodes into Empty (its fields are kept as unknown fields)
				if err := tcc.CallBranch(newMove(b.Payload), b.Try, b.Confirm, b.Cancel, &emptypb.Empty{}); err != nil {
					return err
				}
			}
			return nil
		})
	}))
	mux.HandleFunc("POST /ap/grpc/xa", startGrpc(func(req apRequest) error {
		return dtmgrpc.XaGlobalTransaction2(dtm, req.Gid, func(xa *dtmgrpc.XaGrpc) {
			req.options(&xa.TransBase)
		}, func(xa *dtmgrpc.XaGrpc) error {
			for _, b := range req.Branches {
				if err := xa.CallBranch(newMove(b.Payload), b.Action, &emptypb.Empty{}); err != nil {
					return err
				}
			}
			req.crash()
			return nil
		})
	}))
}

// unaryHandler decodes the request into a dynamic bank.Move (whatever codec grpc-go picked: proto,
// also for DTM's application/grpc+dtm_raw), runs the branch, and answers Empty or its error as
// dtmgrpc maps it.
func unaryHandler(service, method string, run func(context.Context, grpcMove) error) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	call := func(ctx context.Context, req any) (any, error) {
		err := run(ctx, readGrpcMove(req.(*dynamicpb.Message)))
		if err != nil && !errors.Is(err, dtmcli.ErrFailure) {
			log.Printf("grpc branch error: %s: %v", method, err)
		}
		if err != nil {
			return nil, dtmgrpc.DtmError2GrpcError(err)
		}
		return &emptypb.Empty{}, nil
	}
	return func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		req := dynamicpb.NewMessage(bankMove)
		if err := dec(req); err != nil {
			return nil, err
		}
		if interceptor == nil {
			return call(ctx, req)
		}
		return interceptor(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/" + service + "/" + method}, call)
	}
}

// startGrpc serves an /ap/grpc/* endpoint as start does, reading dtmgrpc's gRPC status errors as
// dtmcli errors (ABORTED → FAILURE → 409).
func startGrpc(run func(apRequest) error) http.HandlerFunc {
	return start(func(req apRequest) error { return dtmgrpc.GrpcError2DtmError(run(req)) })
}
