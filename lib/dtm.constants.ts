/** Injection token of the resolved `lynx.dtm` configuration (`DtmConfig`). */
export const DTM_CONFIG = Symbol('DTM_CONFIG');

/** Metadata key under which branch decorators record a `BranchMetadata`. */
export const DTM_BRANCH_METADATA = 'nestjs-dtm:branch';
