import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { DtmModuleOptions } from './dtm.module-options.js';

/** Extras of `forRoot` / `forRootAsync`: `isGlobal` makes DtmClient and TransactionHelper injectable everywhere. */
export interface DtmModuleExtras {
  isGlobal?: boolean;
}

export const {
  ConfigurableModuleClass: DtmConfigurableModule,
  MODULE_OPTIONS_TOKEN: DTM_MODULE_OPTIONS,
  OPTIONS_TYPE: DTM_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: DTM_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<DtmModuleOptions>({ moduleName: 'Dtm' })
  .setClassMethodName('forRoot')
  .setExtras<DtmModuleExtras>({ isGlobal: false }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();
