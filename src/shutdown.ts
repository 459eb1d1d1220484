import type { Logger } from 'pino';

/**
 * Runs a service's shutdown steps in order. Every step runs even when one before it failed; each
 * failure is logged with its step's name, and the first is thrown once all have run.
 */
export async function shutDownInOrder(logger: Logger, steps: ReadonlyArray<readonly [name: string, step: () => unknown]>): Promise<void> {
  let first: { err: unknown } | undefined;
  for (const [name, step] of steps) {
    try {
      await step();
    } catch (err) {
      first ??= { err };
      logger.error({ err, step: name }, 'shutdown step failed');
    }
  }
  if (first) throw first.err;
}
