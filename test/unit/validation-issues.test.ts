import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { integer, optional, text } from '../../src/fields.js';
import { toValidationIssues } from '../../src/http/validation.js';

/** zod issues → FastAPI's [{loc, msg, type}] with pydantic's type names. */
describe('validation issues', () => {
  const schema = z.object({
    name: text({ min: 2, max: 4 }),
    age: integer().pipe(z.number().min(0)),
    ratio: z.number().gt(0).lt(1),
    tags: z.array(z.string()).min(1).max(2),
    meta: z.record(z.string(), z.unknown()),
    kind: z.enum(['a', 'b']),
    code: z.string().regex(/^[A-Z]+$/),
    email: z.email(),
    flag: z.boolean(),
    note: optional(z.string()),
  });
  const issues = (input: unknown, source: 'body' | 'query' = 'body') => {
    const result = schema.safeParse(input, { reportInput: true });
    if (result.success) throw new Error('expected a failure');
    return Object.fromEntries(toValidationIssues(result.error.issues, source).map((i) => [i.loc.join('.'), i.type]));
  };
  const valid = { name: 'abc', age: 1, ratio: 0.5, tags: ['x'], meta: {}, kind: 'a', code: 'AB', email: 'a@b.co', flag: true };

  it('names missing fields, null where a value is needed, and wrong JSON types as pydantic does', () => {
    expect(issues({})).toMatchObject({ 'body.name': 'value_error.missing', 'body.age': 'value_error.missing', 'body.flag': 'value_error.missing' });
    expect(issues({ ...valid, flag: null })).toEqual({ 'body.flag': 'type_error.none.not_allowed' });
    expect(issues({ ...valid, name: { a: 1 }, meta: 'x', tags: 'x', flag: 'yes', ratio: 'x' })).toEqual({
      'body.name': 'type_error.str',
      'body.meta': 'type_error.dict',
      'body.tags': 'type_error.list',
      'body.flag': 'type_error.bool',
      'body.ratio': 'type_error.float',
    });
    expect(issues({ ...valid, note: 5 })).toEqual({ 'body.note': 'type_error.str' });
  });

  it('names bounds, patterns and choices', () => {
    expect(issues({ ...valid, name: 'a', age: -1, ratio: 0, tags: [] }, 'query')).toEqual({
      'query.name': 'value_error.any_str.min_length',
      'query.age': 'value_error.number.not_ge',
      'query.ratio': 'value_error.number.not_gt',
      'query.tags': 'value_error.list.min_items',
    });
    expect(issues({ ...valid, name: 'abcde', ratio: 1, tags: ['a', 'b', 'c'] })).toEqual({
      'body.name': 'value_error.any_str.max_length',
      'body.ratio': 'value_error.number.not_lt',
      'body.tags': 'value_error.list.max_items',
    });
    expect(issues({ ...valid, kind: 'c', code: 'ab', email: 'nope', age: '1.5' })).toEqual({
      'body.kind': 'type_error.enum',
      'body.code': 'value_error.str.regex',
      'body.email': 'value_error.email',
      'body.age': 'type_error.integer',
    });
    expect(issues({ ...valid, age: 'abc' })).toEqual({ 'body.age': 'type_error.integer' });
    expect(issues({ ...valid, age: 2.5 })).toEqual({ 'body.age': 'type_error.integer' });
  });

  it('keeps array indices as numbers in loc', () => {
    const result = z.object({ ids: z.array(z.string()) }).safeParse({ ids: ['a', 2] }, { reportInput: true });
    expect(toValidationIssues(result.error!.issues, 'body')).toEqual([{ loc: ['body', 'ids', 1], msg: 'str type expected', type: 'type_error.str' }]);
  });
});
