/** Worker thread entry: copies ocean.db and counts what the copy holds (operational/backup.ts), off the service's event loop. */
import { parentPort, workerData } from 'node:worker_threads';
import { copyOperationalDb, openReadOnly, operationalFacts } from './backup.js';

const { source, target } = workerData as { source: string; target: string };
try {
  await copyOperationalDb(source, target);
  const db = openReadOnly(target);
  try {
    parentPort!.postMessage({ ok: true, facts: operationalFacts(db) });
  } finally {
    db.close();
  }
} catch (err) {
  parentPort!.postMessage({ ok: false, message: err instanceof Error ? err.message : String(err) });
}
