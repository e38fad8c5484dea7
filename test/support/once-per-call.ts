import type { BranchInfo } from 'nestjs-dtm';

/**
 * A participant's "run once" for test apps without a barrier: the function it returns runs `work` for the call `b`
 * unless one of the same gid, branch and op ran to success before. DTM calls a branch at least once (its cron can
 * call one again while the first call runs, e.g. after another test file's /resetCronTime on the shared DTM), and a
 * participant's business runs once, as the barrier makes it for a real one.
 */
export function oncePerCall(): (b: BranchInfo, work: () => void) => void {
  const ran = new Set<string>();
  return (b, work) => {
    const key = `${b.gid} ${b.branchId} ${b.op}`;
    if (ran.has(key)) return;
    work();
    ran.add(key);
  };
}
