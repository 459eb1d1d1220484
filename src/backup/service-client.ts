import { request } from 'node:http';
import { request as requestTls } from 'node:https';
import { manifestSchema, type Manifest } from './manifest.js';

/** Nothing answers at the service's URL (connection refused, or no such host). */
export class NoServiceError extends Error {}

/** An HTTP call without a time limit (a backup of a large store takes minutes): status and JSON body. */
function call(url: URL, method: string, headers: Record<string, string>, body?: string): Promise<{ status: number; json: unknown }> {
  const send = url.protocol === 'https:' ? requestTls : request;
  return new Promise((resolve, reject) => {
    const req = send(url, { method, headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = text;
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON: kept as text for the message
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
      res.on('error', reject);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      reject(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'EADDRNOTAVAIL'].includes(err.code ?? '') ? new NoServiceError(`nothing answers at ${url.origin}`) : err);
    });
    req.end(body);
  });
}

/** Whether a service answers at `baseUrl` (any HTTP answer from /health). */
export async function serviceAnswers(baseUrl: string): Promise<boolean> {
  try {
    await call(new URL('/health', baseUrl), 'GET', {});
    return true;
  } catch (err) {
    if (err instanceof NoServiceError) return false;
    throw err;
  }
}

/** Asks the running service for a backup into `dir` (a path on its host); its manifest. */
export async function requestBackup(baseUrl: string, adminToken: string, dir: string): Promise<Manifest> {
  const { status, json } = await call(new URL('/api/ocean/admin/backup', baseUrl), 'POST', { authorization: `Bearer ${adminToken}` }, JSON.stringify({ dir }));
  if (status !== 200) {
    const detail = typeof json === 'object' && json !== null && 'message' in json ? String((json as { message: unknown }).message) : String(json).slice(0, 200);
    throw new Error(`the service at ${baseUrl} answered ${status}: ${detail}`);
  }
  return manifestSchema.parse(json);
}
