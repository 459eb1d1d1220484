import pg from 'pg';
import type { Logger } from 'pino';
import type { Pg } from './connect.js';
import { createPgDevices, SECRETS_CHANNEL } from './devices.js';

const MAX_BACKOFF_MS = 5000;

/**
 * Keeps an instance's decoder in step with the devices' own frame secrets in the shared PostgreSQL:
 * loads them now, and again whenever any instance sets one (NOTIFY on SECRETS_CHANNEL at the
 * commit of the registration) and after every reconnection of the listening session (a
 * notification sent while it was away is lost, so the whole set is read again).
 */
export async function watchDeviceSecrets(
  pool: Pg,
  url: string,
  apply: (secrets: ReadonlyMap<string, Buffer>) => void,
  logger: Logger,
): Promise<{ reload(): Promise<void>; close(): Promise<void> }> {
  const devices = createPgDevices(pool);
  // One reload at a time, in order: a set read before a registration never replaces one read after it.
  let last: Promise<void> = Promise.resolve();
  const reload = () => (last = last.catch(() => undefined).then(async () => apply(await devices.ownSecrets())));
  let client: pg.Client | undefined;
  let closed = false;
  let backoff = 100;
  let timer: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    const c = new pg.Client({ connectionString: url, application_name: 'ocean-core secrets' });
    c.on('error', () => undefined);
    c.on('end', () => {
      if (closed || client !== c) return;
      client = undefined;
      logger.warn('device-secrets listener lost its connection; reconnecting');
      schedule();
    });
    c.on('notification', () => {
      reload().catch((err: unknown) => logger.warn({ err }, 'reloading device secrets failed; retried on the next change or reconnection'));
    });
    await c.connect();
    await c.query(`LISTEN ${SECRETS_CHANNEL}`);
    client = c;
    await reload();
    backoff = 100;
  };
  const schedule = () => {
    timer = setTimeout(() => {
      connect().catch((err: unknown) => {
        logger.debug({ err }, 'device-secrets listener could not connect');
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        if (!closed) schedule();
      });
    }, backoff);
  };

  await connect();
  return {
    reload,
    async close() {
      closed = true;
      clearTimeout(timer);
      await client?.end().catch(() => undefined);
    },
  };
}
