import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { ADMIN_ROUTES, CONTRACT, PUBLIC_ROUTES } from './contract.js';
import { expectSchemaShape } from './shape.js';

type Json = Record<string, unknown>;
type Operation = { summary?: string; security?: unknown[]; responses: Record<string, { content?: Record<string, { schema: Json }> }>; parameters?: Json[] };

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/** Structural checks of the OpenAPI 3 document: every $ref resolves, the contract's routes and keys are there. */
describe('OpenAPI document', () => {
  let t: TestApp;
  let doc: { openapi: string; info: Json; paths: Record<string, Record<string, Operation>>; components?: Json & { schemas?: Json; securitySchemes?: Json }; security?: unknown[] };
  beforeAll(async () => {
    t = await createTestApp();
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    doc = res.json();
  });
  afterAll(() => t.close());

  const resolveRef = (ref: string): unknown => {
    expect(ref, 'only local references').toMatch(/^#\//);
    let node: unknown = doc;
    for (const part of ref.slice(2).split('/')) {
      node = (node as Json | undefined)?.[part.replaceAll('~1', '/').replaceAll('~0', '~')];
      expect(node, `${ref} resolves`).toBeDefined();
    }
    return node;
  };
  const resolve = (schema: Json): Json => (typeof schema.$ref === 'string' ? (resolveRef(schema.$ref) as Json) : schema);
  const operation = (method: string, path: string) => doc.paths[path]?.[method.toLowerCase()];

  it('is OpenAPI 3 with info, paths and the two bearer schemes', () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    expect(doc.components?.securitySchemes).toMatchObject({
      bearer: { type: 'http', scheme: 'bearer' },
      admin: { type: 'http', scheme: 'bearer' },
    });
  });

  it('resolves every $ref, and every operation has responses and well-formed parameters', () => {
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) return node.forEach(walk);
      if (node === null || typeof node !== 'object') return;
      for (const [key, value] of Object.entries(node)) {
        if (key === '$ref') resolveRef(value as string);
        else walk(value);
      }
    };
    walk(doc);
    for (const [path, item] of Object.entries(doc.paths)) {
      expect(path).toMatch(/^\//);
      expect(path, 'OpenAPI writes path parameters as {name}').not.toMatch(/:/);
      for (const [method, op] of Object.entries(item)) {
        expect(METHODS, `${method} ${path}`).toContain(method);
        expect(Object.keys(op.responses ?? {}).length, `${method} ${path} responses`).toBeGreaterThan(0);
        for (const p of op.parameters ?? []) {
          expect(p, `${method} ${path} parameter`).toMatchObject({ name: expect.any(String), in: expect.stringMatching(/^(path|query|header|cookie)$/) });
          if (p.in === 'path') expect(p.required).toBe(true);
        }
        for (const name of path.match(/\{(\w+)\}/g) ?? []) {
          expect((op.parameters ?? []).some((p) => p.in === 'path' && `{${p.name as string}}` === name), `${method} ${path} declares ${name}`).toBe(true);
        }
      }
    }
  });

  it.each(CONTRACT.map((r) => [`${r.method} ${r.path}`, r] as const))('documents %s with every key of the original answer', (_name, route) => {
    const op = operation(route.method, route.path);
    expect(op, `${route.method} ${route.path}`).toBeDefined();
    const schema = op!.responses['200']?.content?.['application/json']?.schema;
    expect(schema, `${route.method} ${route.path} 200 schema`).toBeDefined();
    expectSchemaShape(schema!, route.answer, resolve, `${route.method} ${route.path}`);
  });

  it('documents errors with detail (text or the validation list) beside error, message and statusCode; 422 for validation', () => {
    const op = operation('POST', '/api/ocean/users')!;
    const error = resolve(op.responses['422']!.content!['application/json']!.schema);
    expect(error).toMatchObject({ type: 'object', required: expect.arrayContaining(['detail', 'error', 'message', 'statusCode']) });
    expect(op.responses['400']).toBeUndefined();
  });

  it('marks the body optional where the input may come from the query string instead, required elsewhere', () => {
    for (const path of ['/api/ocean/sessions/validate', '/api/ocean/billing/{user_id}/add-credits', '/api/ocean/metadata/{key}']) {
      expect((operation('POST', path) as unknown as { requestBody: { required: boolean } }).requestBody.required, path).toBe(false);
    }
    expect((operation('POST', '/api/ocean/users') as unknown as { requestBody: { required: boolean } }).requestBody.required).toBe(true);
  });

  it('shows no lock on the public routes', () => {
    for (const [method, path] of PUBLIC_ROUTES) expect(operation(method, path)?.security, `${method} ${path}`).toEqual([]);
  });

  it('marks admin-only routes with the admin scheme and "(admin)" in the summary, user routes with the bearer default', () => {
    for (const [method, path] of ADMIN_ROUTES) {
      const op = operation(method, path)!;
      expect(op.security, `${method} ${path}`).toEqual([{ admin: [] }]);
      expect(op.summary, `${method} ${path}`).toMatch(/\(admin\)$/);
    }
    expect(doc.security).toEqual([{ bearer: [] }]);
    expect(operation('GET', '/api/ocean/users/{user_id}')!.security).toBeUndefined();
    expect(operation('GET', '/api/ocean/users/{user_id}')!.summary).not.toMatch(/admin/);
  });

  it("documents export's 200 as the file in each format's content type", () => {
    const content = operation('GET', '/api/ocean/analytics/export')!.responses['200']!.content!;
    expect(Object.keys(content).sort()).toEqual(['application/json', 'application/vnd.apache.parquet', 'application/x-ndjson', 'text/csv']);
    for (const { schema } of Object.values(content)) expect(schema).toMatchObject({ type: 'string', format: 'binary' });
  });

  it('documents the frames body as bytes and the answers a frame sender can meet', () => {
    const op = operation('POST', '/api/ocean/telemetry/frames') as unknown as Operation & { requestBody: { required: boolean; content: Record<string, { schema: Json }> } };
    expect(op.requestBody.required).toBe(true);
    expect(Object.keys(op.requestBody.content)).toEqual(['application/octet-stream']);
    expect(op.requestBody.content['application/octet-stream']!.schema).toMatchObject({ type: 'string', format: 'binary' });
    expect(Object.keys(op.responses).sort()).toEqual(['200', '400', '408', '413', '415', '429', '503']);
  });
});
