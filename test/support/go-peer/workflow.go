// The go-peer as a workflow application, written with DTM's Go SDK `workflow` package (v1.19.0,
// HTTP protocol): its steps call nestjs-dtm's branches, which thereby serve workflow calls
// (trans_type=workflow, ops action / commit / rollback).
//
// Workflow `go-transfer`, input {"steps":[{"action","compensate","commit","payload"}]} (compensate
// and commit optional). For each step, in order: wf.NewBranch() (branch ids 01, 02, …); OnRollback
// posting the payload to compensate, OnCommit posting it to commit (both registered before the
// action, as the SDK requires); then the action, POST payload through wf.NewRequest(). A URL that
// is no http(s):// URL is a gRPC target host:port/package.Service/Method, called with the payload
// as a bank.Move through the SDK's workflow.Interceptor (the same dtm-* metadata and op). Every request
// made with wf.NewRequest() carries the query gid, trans_type=workflow, branch_id and op, op being
// the SDK's current op: `action` for the step, `rollback` / `commit` inside the phase-2 callbacks
// (the SDK runs them in reverse order; they are not recorded as steps, the callback itself is).
// The SDK maps the action's answer: 200 success, 409 FAILURE (the workflow rolls back: earlier
// steps' rollback callbacks run; by default the failed step itself is not compensated), 425
// ONGOING, anything else an error (no phase 2, no submit: DTM resumes the workflow later).
// A phase-2 callback whose branch answers 409 would make the SDK panic ("should not return ErrFail
// in phase2"): here it is reported as a plain error instead (no submit, DTM resumes).
// An empty input (DTM resumes with GET and no body then) is a workflow without steps.
//
// Endpoints on the HTTP mux:
// go-transfer-fast is the same workflow with TimeoutToFail 1 and RetryInterval 1: DTM resumes it
// through the callback 1 s after it was left unfinished (the peer killed during a step).
//
//   - POST /ap/workflow {gid, name (default go-transfer), input}: workflow.ExecuteCtx; answers like
//     /ap/*: 200 {"gid"}, 409 FAILURE (rollback reason), 425 ONGOING, else 500.
//   - POST and GET /workflow/resume: DTM's resume callback (query op = workflow name, gid; body = the
//     stored input, none with GET); the callback URL given to workflow.InitHTTP is
//     http://<the HTTP listener's address>/workflow/resume, set once the peer listens.
//
// Note: DTM v1.19.0 with its default config (UpdateBranchSync 0) records a workflow's steps only
// when registerBranch carries `sync`, which the Go SDK never sends: on boltdb / redis no progress is
// kept, so a resumed workflow re-executes every step (branches must be idempotent).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"

	"strings"
	"sync"

	"github.com/dtm-labs/dtm/client/dtmcli"
	"github.com/dtm-labs/dtm/client/dtmgrpc"
	"github.com/dtm-labs/dtm/client/workflow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	goTransferName = "go-transfer"
	resumePath     = "/workflow/resume"
)

// wfStep is one step of go-transfer's input.
type wfStep struct {
	Action     string          `json:"action"`
	Compensate string          `json:"compensate"`
	Commit     string          `json:"commit"`
	Payload    json.RawMessage `json:"payload"`
}

// body is the JSON the step's calls send: the payload as given ({} when there is none).
func (s wfStep) body() []byte {
	if len(bytes.TrimSpace(s.Payload)) == 0 {
		return []byte("{}")
	}
	return s.Payload
}

// goTransfer is the workflow go-transfer.
func goTransfer(wf *workflow.Workflow, data []byte) error {
	var input struct {
		Steps []wfStep `json:"steps"`
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &input); err != nil {
			return dtmcli.ErrorMessage2Error("go-transfer: bad input: "+err.Error(), dtmcli.ErrFailure)
		}
	}
	for i, step := range input.Steps {
		if step.Action == "" {
			return dtmcli.ErrorMessage2Error(fmt.Sprintf("go-transfer: step %d has no action", i+1), dtmcli.ErrFailure)
		}
		body := step.body()
		wf.NewBranch()
		if step.Compensate != "" {
			wf.OnRollback(func(*dtmcli.BranchBarrier) error { return phase2Call(wf, step.Compensate, body) })
		}
		if step.Commit != "" {
			wf.OnCommit(func(*dtmcli.BranchBarrier) error { return phase2Call(wf, step.Commit, body) })
		}
		if err := call(wf, step.Action, body); err != nil {
			return err // FAILURE: rollback; ONGOING / other: DTM resumes
		}
	}
	return nil
}

// call sends body to target with the current op (the SDK sets it): an http(s):// URL gets it
// POSTed through wf.NewRequest(); a gRPC target host:port/package.Service/Method gets it as a
// bank.Move through a connection with the SDK's workflow.Interceptor, called with wf.Context.
func call(wf *workflow.Workflow, target string, body []byte) error {
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		_, err := wf.NewRequest().SetHeader("Content-Type", "application/json").SetBody(body).Post(target)
		return err
	}
	var m move
	if err := json.Unmarshal(body, &m); err != nil {
		return err
	}
	server, method, _ := strings.Cut(target, "/")
	conn, err := workflowConn(server)
	if err != nil {
		return err
	}
	// the reply: any message decodes into Empty (its fields are kept as unknown fields)
	return dtmgrpc.GrpcError2DtmError(conn.Invoke(wf.Context, "/"+method, newMove(m), &emptypb.Empty{}))
}

var workflowConns sync.Map

// workflowConn is a connection to server whose calls go through the SDK's workflow.Interceptor.
func workflowConn(server string) (*grpc.ClientConn, error) {
	if conn, ok := workflowConns.Load(server); ok {
		return conn.(*grpc.ClientConn), nil
	}
	conn, err := grpc.Dial(server, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUnaryInterceptor(workflow.Interceptor))
	if err != nil {
		return nil, err
	}
	actual, _ := workflowConns.LoadOrStore(server, conn)
	return actual.(*grpc.ClientConn), nil
}

// phase2Call is a commit / rollback callback: body to target with the current op (see call).
// FAILURE is not an answer phase 2 may give (the SDK panics on it): it becomes a plain error.
func phase2Call(wf *workflow.Workflow, target string, body []byte) error {
	err := call(wf, target, body)
	if errors.Is(err, dtmcli.ErrFailure) {
		return fmt.Errorf("go-transfer: phase 2 call answered FAILURE: %s", err.Error())
	}
	return err
}

// serveWorkflow registers go-transfer and adds /ap/workflow and /workflow/resume to mux.
func serveWorkflow(mux *http.ServeMux) {
	check(workflow.Register(goTransferName, goTransfer))
	// the same workflow, which DTM resumes 1 s after it was left unfinished (TimeoutToFail 1,
	// RetryInterval 1), instead of the default 35 s
	check(workflow.Register(goTransferName+"-fast", goTransfer, func(wf *workflow.Workflow) {
		wf.TimeoutToFail = 1
		wf.RetryInterval = 1
	}))
	// executions run with their own context: neither DTM's request timeout on the resume call nor a
	// caller that gives up cuts a workflow short between a step and its registration
	resume := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		q := r.URL.Query()
		log.Printf("workflow resume: %s %s gid=%s (%d bytes)", r.Method, q.Get("op"), q.Get("gid"), len(body))
		if err == nil {
			_, err = workflow.ExecuteCtx(context.Background(), q.Get("op"), q.Get("gid"), body)
		}
		answer(w, nil, err)
	}
	mux.HandleFunc("POST "+resumePath, resume)
	mux.HandleFunc("GET "+resumePath, resume) // DTM resumes with GET when the input is empty
	mux.HandleFunc("POST /ap/workflow", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Gid   string          `json:"gid"`
			Name  string          `json:"name"`
			Input json.RawMessage `json:"input"`
		}
		err := json.NewDecoder(r.Body).Decode(&req)
		if err == nil {
			if req.Name == "" {
				req.Name = goTransferName
			}
			_, err = workflow.ExecuteCtx(context.Background(), req.Name, req.Gid, req.Input)
		}
		answer(w, map[string]string{"gid": req.Gid}, err)
	})
}

// initWorkflow points the SDK at DTM, with this peer's resume route as the callback.
func initWorkflow(dtm string, listener net.Listener) {
	workflow.InitHTTP(dtm, "http://"+listener.Addr().String()+resumePath)
}
