// `node --import .build/bench/otel-preload.js app.js`: registers the dropping OpenTelemetry SDK with
// its HTTP and gRPC instrumentations before the app loads anything (bench/otel-sdk.ts).
import { registerDroppingOtelSdk } from './otel-sdk.js';

registerDroppingOtelSdk({ instrumented: true });
