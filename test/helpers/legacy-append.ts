import type { AnalyticsClient } from '../../src/analytics/client.js';
import { commitRows, type MeasurementRow as Row } from './measurements.js';

/**
 * test/compat loads its rows with `service.analytics.appendBatch(rows, highWater)` and the row
 * type from engine.ts, from before the store took one commit per batch; it is kept unchanged, so
 * the test app gives its client that method, committing through `commit` like every other test.
 */
declare module '../../src/analytics/client.js' {
  interface AnalyticsClient {
    /** Tests only (test/helpers/legacy-append.ts): the rows as one commit; `highWater` is not kept. */
    appendBatch(rows: readonly Row[], highWater: number): Promise<void>;
  }
}
declare module '../../src/analytics/engine.js' {
  /** Tests only (test/helpers/legacy-append.ts): a row as test/helpers/measurements.ts builds it. */
  interface MeasurementRow extends Row {}
}

export function withLegacyAppend(client: AnalyticsClient): void {
  client.appendBatch = async (rows) => {
    await commitRows(client, rows);
  };
}
