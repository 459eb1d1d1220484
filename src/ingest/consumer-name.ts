import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The consumer name this data dir serves the stream group as, kept in the data dir: the first
 * start writes it (INGEST_CONSUMER, or the host name), later starts read it, so a restarted or
 * moved process reads its own pending entries first whatever its host is called now.
 */
export function consumerNameOf(dataDir: string, configured: string): string {
  const file = join(dataDir, 'consumer');
  if (existsSync(file)) {
    const kept = readFileSync(file, 'utf8').trim();
    if (kept.length > 0) return kept;
  }
  writeFileSync(file, `${configured}\n`, { mode: 0o600 });
  return configured;
}
