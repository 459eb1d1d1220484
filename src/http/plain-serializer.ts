import type { FastifySerializerCompiler } from 'fastify';

/**
 * Response serializer for hot routes whose handlers build the exact response object themselves:
 * plain JSON.stringify, without re-validating the object against its zod schema (which costs
 * several times the stringify). The zod response schema still documents the route in OpenAPI.
 */
export const plainJsonSerializer: FastifySerializerCompiler<unknown> = () => (data) => JSON.stringify(data);
