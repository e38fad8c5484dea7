import { Test, type TestingModule } from '@nestjs/testing';
import { DtmClient, DtmModule, TransactionHelper, type DtmModuleOptions } from 'nestjs-dtm';
import { harness } from './harness.js';

/** A Nest testing module importing DtmModule, and what it provides. */
export interface DtmTestApp {
  module: TestingModule;
  client: DtmClient;
  helper: TransactionHelper;
  close(): Promise<void>;
}

/**
 * Compiles and initialises a Nest module that imports `DtmModule.forRoot(options)`, pointed at the
 * harness's DTM server (HTTP and gRPC) unless `options.config` says otherwise.
 */
export async function startDtmApp(options: DtmModuleOptions = {}): Promise<DtmTestApp> {
  const config = options.configFile ? options.config : { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, ...options.config };
  const module = await Test.createTestingModule({ imports: [DtmModule.forRoot({ ...options, config })] }).compile();
  await module.init();
  return { module, client: module.get(DtmClient), helper: module.get(TransactionHelper), close: () => module.close() };
}
