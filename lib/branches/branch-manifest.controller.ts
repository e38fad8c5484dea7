// The branch manifest over gRPC: nestjs_dtm.Branches/Manifest (protos/branches.proto), the same
// JSON as the HTTP route GET /dtm/branches. Served only by gRPC servers that load the proto, and
// answers only with lynx.dtm.publish_branches. Other services' nestjs-dtm call it without
// credentials, as they GET the HTTP route (which is outside the app's guards): isDtmBranchHandler
// is true for it, so a global guard written as the module advises lets it through.
import { Controller, Inject } from '@nestjs/common';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { DTM_CONFIG } from '../dtm.constants.js';
import { DtmBranchRegistry } from './branch.registry.js';
import { dtmEndpoint, grpcMethod, shippedProto } from './workflow-resume.js';

/** The branch manifest proto shipped with the package: add it (package `nestjs_dtm`) to your Nest gRPC microservice's `protoPath`. */
export const DTM_BRANCHES_PROTO: string = shippedProto('branches.proto');

/** gRPC UNIMPLEMENTED. */
const UNIMPLEMENTED = 12;

/** The gRPC manifest endpoint: `nestjs_dtm.Branches/Manifest`. */
@Controller()
export class DtmManifestController {
  constructor(
    @Inject(DTM_CONFIG) private readonly config: DtmConfig,
    @Inject(DtmBranchRegistry) private readonly registry: DtmBranchRegistry,
  ) {}

  @grpcMethod('nestjs_dtm.Branches', 'Manifest')
  @dtmEndpoint()
  manifest(): { json: string } {
    if (!this.config.publishBranches) throw Object.assign(new Error('this app does not publish its branches (lynx.dtm.publish_branches)'), { code: UNIMPLEMENTED });
    return { json: JSON.stringify(this.registry.manifest()) };
  }
}
