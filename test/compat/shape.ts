import { expect } from 'vitest';
import type { Shape } from './contract.js';

/** The JSON type of a value; an integral number is 'integer' (and also counts as 'number'). */
export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

const accepts = (wanted: string, actual: string) =>
  wanted.split('|').some((t) => t === actual || (t === 'number' && actual === 'integer'));

/**
 * Asserts that `value` has at least the keys of `shape` with those JSON types (nested objects and
 * array items too); with `exact`, no other key either. `where` names the value in failures.
 */
export function expectShape(value: unknown, shape: Shape, options: { exact?: boolean; where?: string } = {}): void {
  const where = options.where ?? 'answer';
  expect(jsonType(value), where).toBe('object');
  const object = value as Record<string, unknown>;
  for (const [key, wanted] of Object.entries(shape)) {
    const path = `${where}.${key}`;
    expect(Object.hasOwn(object, key), `${path} is missing`).toBe(true);
    const actual = object[key];
    if (typeof wanted === 'string') {
      expect(accepts(wanted, jsonType(actual)), `${path}: ${jsonType(actual)} is not ${wanted}`).toBe(true);
    } else if (Array.isArray(wanted)) {
      expect(jsonType(actual), path).toBe('array');
      (actual as unknown[]).forEach((item, i) => expectShape(item, wanted[0], { where: `${path}[${i}]` }));
    } else {
      expectShape(actual, wanted, { where: path });
    }
  }
  if (options.exact) expect(Object.keys(object).sort(), `${where}: exact key set`).toEqual(Object.keys(shape).sort());
}

type JsonSchema = { $ref?: string; type?: string; anyOf?: JsonSchema[]; oneOf?: JsonSchema[]; nullable?: boolean; properties?: Record<string, JsonSchema>; items?: JsonSchema; required?: string[] };

/** The JSON types a JSON Schema (OpenAPI 3.0 flavour) allows. */
function schemaTypes(schema: JsonSchema, resolve: (s: JsonSchema) => JsonSchema): Set<string> {
  const s = resolve(schema);
  const types = new Set<string>();
  if (s.type) types.add(s.type);
  for (const branch of [...(s.anyOf ?? []), ...(s.oneOf ?? [])]) for (const t of schemaTypes(branch, resolve)) types.add(t);
  if (s.nullable) types.add('null');
  return types;
}

/** Asserts that an OpenAPI response schema documents every key of `shape`, required, with a compatible type. */
export function expectSchemaShape(schema: JsonSchema, shape: Shape, resolve: (s: JsonSchema) => JsonSchema, where: string): void {
  const s = resolve(schema);
  expect(s.type, where).toBe('object');
  for (const [key, wanted] of Object.entries(shape)) {
    const path = `${where}.${key}`;
    const property = s.properties?.[key];
    expect(property, `${path} is not documented`).toBeDefined();
    expect(s.required ?? [], `${path} is not required`).toContain(key);
    const types = schemaTypes(property!, resolve);
    if (typeof wanted === 'string') {
      // No type at all documents "any JSON value", which holds every type the contract names.
      if (types.size === 0) continue;
      for (const t of wanted.split('|')) {
        const ok = types.has(t) || (t === 'integer' && types.has('number'));
        expect(ok, `${path}: documented as ${[...types].join('|')}, contract says ${wanted}`).toBe(true);
      }
    } else if (Array.isArray(wanted)) {
      expect(types.has('array'), path).toBe(true);
      expectSchemaShape(resolve(property!).items!, wanted[0], resolve, `${path}[]`);
    } else {
      expectSchemaShape(property!, wanted, resolve, path);
    }
  }
}

/**
 * The keys of the object under top-level `key`, in the order the JSON text has them. JSON.parse
 * cannot tell: a JS object lists integer-like keys ("42") first whatever the text says.
 */
export function keysInOrder(text: string, key: string): string[] {
  const start = text.indexOf(`${JSON.stringify(key)}:{`);
  if (start < 0) throw new Error(`no object ${key} in ${text.slice(0, 200)}`);
  const keys: string[] = [];
  let depth = 0;
  for (let i = start + JSON.stringify(key).length + 1; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && text[j + 1] === ':') keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      i = j;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return keys;
    }
  }
  throw new Error('unterminated object');
}
