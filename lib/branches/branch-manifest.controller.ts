// The branch manifest over gRPC: nestjs_dtm.Branches/Manifest (protos/branches.proto), the same
// JSON as the HTTP route GET /dtm/branches. Served only by gRPC servers that load the proto, and
// answers only with lynx.dtm.publish_branches. Other services' nestjs-dtm call it without
// credentials, as they GET the HTTP route (which is outside the app's guards): isDtmBranchHandler
// is true for it, so a global guard written as the module advises lets it through.
import { Controller, Inject, NotFoundException, UseFilters } from '@nestjs/common';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { DTM_CONFIG } from '../dtm.constants.js';
import { DtmBranchExceptionFilter } from './branch-exception.filter.js';
import { DtmBranchRegistry } from './branch.registry.js';
import { dtmEndpoint, grpcMethod, shippedProto } from './workflow-resume.js';

/** The branch manifest proto shipped with the package: add it (package `nestjs_dtm`) to your Nest gRPC microservice's `protoPath`. */
export const DTM_BRANCHES_PROTO: string = shippedProto('branches.proto');

/** The gRPC manifest endpoint: `nestjs_dtm.Branches/Manifest`. */
@Controller()
export class DtmManifestController {
  constructor(
    @Inject(DTM_CONFIG) private readonly config: DtmConfig,
    @Inject(DtmBranchRegistry) private readonly registry: DtmBranchRegistry,
  ) {}

  @grpcMethod('nestjs_dtm.Branches', 'Manifest')
  @dtmEndpoint()
  @UseFilters(DtmBranchExceptionFilter)
  manifest(): { json: string } {
    // NOT_FOUND through the module's filter (as GET /dtm/branches answers 404 then), which callers
    // read as "does not publish": a plain Error would reach them as Nest's "Internal server error"
    // (UNKNOWN), whatever its code, read as a service that did not answer
    if (!this.config.publishBranches) throw new NotFoundException('this app does not publish its branches (lynx.dtm.publish_branches)');
    return { json: JSON.stringify(this.registry.manifest()) };
  }
}
