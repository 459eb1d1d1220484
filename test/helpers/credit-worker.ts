/**
 * Child process for the cross-process billing test: opens the operational store on the file given
 * as argv[2] and adds +1 credit to user argv[3], argv[4] times, each in its own transaction.
 */
import { openOperationalStore } from '../../src/operational/store.js';

const [path, userId, times] = process.argv.slice(2);
const store = openOperationalStore(path!, { sessionTtlS: 3600 });
try {
  for (let i = 0; i < Number(times); i++) store.billing.addCredits(userId!, 1, `worker ${process.pid}`);
} finally {
  store.close();
}
