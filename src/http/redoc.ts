import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

/**
 * The ReDoc page, as FastAPI serves it at /redoc: a small HTML page that loads ReDoc's standalone
 * bundle and points it at /openapi.json. The bundle comes from the `redoc` npm package and is
 * served by this service (REDOC_SCRIPT_URL), not from a CDN, so the page works on a closed network
 * as Swagger UI at /docs does.
 */
export const REDOC_SCRIPT_URL = '/redoc/redoc.standalone.js';

export function redocPage(specUrl: string, title: string): string {
  return `<!DOCTYPE html>
<html>
<head>
<title>${title} - ReDoc</title>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="${specUrl}"></redoc>
<script src="${REDOC_SCRIPT_URL}"></script>
</body>
</html>
`;
}

/**
 * ReDoc's standalone bundle (about 1 MB), read from the installed package, with an ETag of its
 * content. `redoc` is a dev dependency (its React tree is ~80 MB); the image copies this one file.
 */
export async function loadRedocBundle(): Promise<{ body: Buffer; etag: string }> {
  const body = await readFile(createRequire(import.meta.url).resolve('redoc/bundles/redoc.standalone.js'));
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url')}"` };
}
