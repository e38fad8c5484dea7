// DTM v1.19.0's gRPC API (client/dtmgrpc/dtmgpb/dtmgimp.proto of github.com/dtm-labs/dtm) as a
// protobufjs JSON descriptor, so that it loads without a .proto file to find at run time (the
// package has two build roots) and without code generation. Field names keep the proto's spelling.
// test/unit/grpc-wire.spec.ts compares it with the upstream file, field by field.

const int64 = 'int64';

/** `dtmgimp` (service `Dtm`) and `google.protobuf.Empty`, for `@grpc/proto-loader`'s `fromJSON`. */
export const DTM_GRPC_DESCRIPTOR = {
  nested: {
    google: { nested: { protobuf: { nested: { Empty: { fields: {} } } } } },
    dtmgimp: {
      nested: {
        Dtm: {
          methods: {
            NewGid: { requestType: 'google.protobuf.Empty', responseType: 'DtmGidReply' },
            Submit: { requestType: 'DtmRequest', responseType: 'google.protobuf.Empty' },
            Prepare: { requestType: 'DtmRequest', responseType: 'google.protobuf.Empty' },
            Abort: { requestType: 'DtmRequest', responseType: 'google.protobuf.Empty' },
            RegisterBranch: { requestType: 'DtmBranchRequest', responseType: 'google.protobuf.Empty' },
            PrepareWorkflow: { requestType: 'DtmRequest', responseType: 'DtmProgressesReply' },
            Subscribe: { requestType: 'DtmTopicRequest', responseType: 'google.protobuf.Empty' },
            Unsubscribe: { requestType: 'DtmTopicRequest', responseType: 'google.protobuf.Empty' },
            DeleteTopic: { requestType: 'DtmTopicRequest', responseType: 'google.protobuf.Empty' },
          },
        },
        DtmTransOptions: {
          fields: {
            WaitResult: { type: 'bool', id: 1 },
            TimeoutToFail: { type: int64, id: 2 },
            RetryInterval: { type: int64, id: 3 },
            BranchHeaders: { keyType: 'string', type: 'string', id: 5 },
            RequestTimeout: { type: int64, id: 6 },
            RetryLimit: { type: int64, id: 7 },
          },
        },
        DtmRequest: {
          fields: {
            Gid: { type: 'string', id: 1 },
            TransType: { type: 'string', id: 2 },
            TransOptions: { type: 'DtmTransOptions', id: 3 },
            CustomedData: { type: 'string', id: 4 },
            BinPayloads: { rule: 'repeated', type: 'bytes', id: 5 },
            QueryPrepared: { type: 'string', id: 6 },
            Steps: { type: 'string', id: 7 },
            ReqExtra: { keyType: 'string', type: 'string', id: 8 },
            RollbackReason: { type: 'string', id: 9 },
          },
        },
        DtmGidReply: { fields: { Gid: { type: 'string', id: 1 } } },
        DtmBranchRequest: {
          fields: {
            Gid: { type: 'string', id: 1 },
            TransType: { type: 'string', id: 2 },
            BranchID: { type: 'string', id: 3 },
            Op: { type: 'string', id: 4 },
            Data: { keyType: 'string', type: 'string', id: 5 },
            BusiPayload: { type: 'bytes', id: 6 },
          },
        },
        DtmProgressesReply: {
          fields: {
            Transaction: { type: 'DtmTransaction', id: 1 },
            Progresses: { rule: 'repeated', type: 'DtmProgress', id: 2 },
          },
        },
        DtmTransaction: {
          fields: {
            Gid: { type: 'string', id: 1 },
            Status: { type: 'string', id: 2 },
            RollbackReason: { type: 'string', id: 3 },
            Result: { type: 'string', id: 4 },
          },
        },
        DtmProgress: {
          fields: {
            Status: { type: 'string', id: 1 },
            BinData: { type: 'bytes', id: 2 },
            BranchID: { type: 'string', id: 3 },
            Op: { type: 'string', id: 4 },
          },
        },
        DtmTopicRequest: {
          fields: {
            Topic: { type: 'string', id: 1 },
            URL: { type: 'string', id: 2 },
            Remark: { type: 'string', id: 3 },
          },
        },
      },
    },
  },
} as const;
