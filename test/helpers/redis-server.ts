import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { launch as launchProcess, stop } from './child-process.js';
import { makeTempDir } from './temp-dir.js';

export interface RedisServer {
  url: string;
  port: number;
  dir: string;
  /** Stops gracefully (SIGTERM: AOF flushed) and starts again on the same port and directory. */
  restart(): Promise<void>;
  /** Stops gracefully, keeping the port and directory for resume(). */
  pause(): Promise<void>;
  /** Starts again after pause(). */
  resume(): Promise<void>;
  /** Stops the server and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** A port that was free a moment ago (bind to 0, read it, release it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function waitForPing(url: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis-server at ${url} did not answer`);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      client.disconnect();
    }
  }
}

/**
 * A private redis-server for one test file, on a free port, in its own temp directory; never the
 * machine's shared Redis on 6379. With appendonly it persists like production (AOF, everysec).
 */
export async function startRedis(options: { appendonly?: boolean; maxmemory?: string } = {}): Promise<RedisServer> {
  const temp = await makeTempDir('ocean-redis-');
  const dir = temp.path;
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--maxmemory-policy', 'noeviction'];
  args.push('--appendonly', options.appendonly ? 'yes' : 'no', '--appendfsync', 'everysec');
  if (options.maxmemory) args.push('--maxmemory', options.maxmemory);
  let child: ChildProcess | undefined;
  let stopped: Promise<void> | undefined;

  const launch = async () => {
    child = launchProcess('redis-server', args).proc;
    await waitForPing(url);
  };
  const halt = async () => {
    if (!child) return;
    const c = child;
    child = undefined;
    await stop(c);
  };

  await launch();
  return {
    url,
    port,
    dir,
    async restart() {
      await halt();
      await launch();
    },
    pause: halt,
    resume: launch,
    stop() {
      stopped ??= (async () => {
        await halt();
        await temp.cleanup();
      })();
      return stopped;
    },
  };
}
