/**
 * The ReDoc page, as FastAPI serves it at /redoc: a small HTML page that loads ReDoc's
 * standalone bundle from its CDN and points it at /openapi.json. Bundling ReDoc instead would
 * pull React and its dependency tree into the service for one documentation page; Swagger UI
 * at /docs is the self-contained alternative where the CDN cannot be reached.
 */
export const REDOC_BUNDLE_URL = 'https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js';

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
<script src="${REDOC_BUNDLE_URL}"></script>
</body>
</html>
`;
}
