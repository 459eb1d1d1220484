import type { UnitOutcome } from './pipeline.js';

/**
 * Rejected frames listed one by one in an answer; past these, only counted. A body may carry
 * thousands of cheap frames, and one JSON entry each made the answer twice the size of the body.
 */
export const MAX_REJECTED_LISTED = 16;

/**
 * What POST /telemetry/frames answers about a body. `accepted` and `rejected` keep the shape the
 * simulator and other clients read (`rejected`: the first MAX_REJECTED_LISTED, in body order —
 * every one for a body with that few); the counts say how many there were in all.
 */
export interface FramesResult {
  accepted: number;
  rejected: Array<{ index: number; reason: string }>;
  /** Every rejected frame of the body, listed or not. */
  rejected_count: number;
  /** The same, by reason. */
  rejected_by_reason: Record<string, number>;
}

/** The answer for a body's outcomes (one per frame, in body order). */
export function framesResult(outcomes: readonly UnitOutcome[]): FramesResult {
  const rejected: FramesResult['rejected'] = [];
  const byReason = new Map<string, number>();
  let count = 0;
  outcomes.forEach((outcome, index) => {
    if (outcome.ok) return;
    count++;
    byReason.set(outcome.reason, (byReason.get(outcome.reason) ?? 0) + 1);
    if (rejected.length < MAX_REJECTED_LISTED) rejected.push({ index, reason: outcome.reason });
  });
  return { accepted: outcomes.length - count, rejected, rejected_count: count, rejected_by_reason: Object.fromEntries(byReason) };
}
