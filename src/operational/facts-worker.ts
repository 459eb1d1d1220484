/** Worker thread entry: operationalFacts of a database file (operational/backup.ts), off the service's event loop. */
import { parentPort, workerData } from 'node:worker_threads';
import { openReadOnly, operationalFacts } from './backup.js';

const { path } = workerData as { path: string };
try {
  const db = openReadOnly(path);
  try {
    parentPort!.postMessage({ ok: true, facts: operationalFacts(db) });
  } finally {
    db.close();
  }
} catch (err) {
  parentPort!.postMessage({ ok: false, message: err instanceof Error ? err.message : String(err) });
}
