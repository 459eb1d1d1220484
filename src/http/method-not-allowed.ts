/**
 * Which methods a path has, so that a known path asked with another method answers 405 with
 * `Allow` (as the original did) rather than Fastify's 404. Fed by the onRoute hook; consulted
 * only on a miss, so a linear scan over the route patterns costs nothing on served requests.
 */
export class MethodIndex {
  private readonly routes: Array<{ pattern: RegExp; methods: Set<string> }> = [];
  private readonly byUrl = new Map<string, Set<string>>();

  add(url: string, methods: readonly string[]): void {
    let set = this.byUrl.get(url);
    if (!set) {
      set = new Set();
      this.byUrl.set(url, set);
      this.routes.push({ pattern: patternOf(url), methods: set });
    }
    for (const m of methods) set.add(m);
  }

  /** The methods of every route whose pattern matches `path`, sorted; empty for an unknown path. */
  allowed(path: string): string[] {
    const found = new Set<string>();
    for (const route of this.routes) {
      if (route.pattern.test(path)) for (const m of route.methods) found.add(m);
    }
    return [...found].sort();
  }
}

/** `/a/:id/b` → /^\/a\/[^/]+\/b\/?$/ ; `*` matches the rest. A trailing slash is ignored, as by the router. */
function patternOf(url: string): RegExp {
  const body = url
    .replace(/\/+$/, '')
    .split('/')
    .map((segment) => {
      if (segment === '*') return '.*';
      if (segment.startsWith(':')) return '[^/]+';
      return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return new RegExp(`^${body}/?$`);
}
