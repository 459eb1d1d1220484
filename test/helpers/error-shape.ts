import { expect } from 'vitest';

/**
 * An answer in the service's error shape (`detail`, `error`, `message`, `statusCode`; see errors.ts)
 * with the given status, the given `error` code if one is named, and no stack trace in it.
 */
export function expectErrorShape(res: { statusCode: number; json(): unknown }, statusCode: number, error?: string): void {
  expect(res.statusCode).toBe(statusCode);
  const body = res.json();
  expect(body).toMatchObject({ statusCode, error: error ?? expect.any(String), message: expect.any(String), detail: expect.anything() });
  expect(Object.keys(body as object).sort()).toEqual(['detail', 'error', 'message', 'statusCode']);
  expect(JSON.stringify(body)).not.toMatch(/\bat .+\.(ts|js):\d+/);
}
