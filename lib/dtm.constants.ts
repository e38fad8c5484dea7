/** Injection token of the resolved `lynx.dtm` configuration (`DtmConfig`). */
export const DTM_CONFIG = Symbol('DTM_CONFIG');
