import { pino, type DestinationStream, type Logger } from 'pino';

/** Query parameters whose value is a secret (session tokens: `/sessions/validate?token=`). */
const SECRET_PARAMS = new Set(['token']);

/**
 * The URL with the values of secret query parameters replaced. Names are compared as the router
 * reads them, percent-decoded (`?%74oken=` is `token` to the route, so it is to this too), `+` as
 * a space, case-insensitively; a name that does not decode is scrubbed too, to be safe.
 */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = url.slice(q + 1).split('&').map((param) => {
    const eq = param.indexOf('=');
    if (eq < 0) return param;
    const name = param.slice(0, eq);
    return isSecretName(name) ? `${name}=[redacted]` : param;
  });
  return `${url.slice(0, q + 1)}${params.join('&')}`;
}

function isSecretName(name: string): boolean {
  try {
    return SECRET_PARAMS.has(decodeURIComponent(name.replace(/\+/g, ' ')).toLowerCase());
  } catch {
    return true;
  }
}

/**
 * The process logger. Request logs carry method, URL (token scrubbed), request id and status; never
 * headers, so Authorization and X-Device-Id secrets cannot reach the log. Known secret-bearing
 * fields are redacted wherever they appear.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    redact: {
      paths: ['token', '*.token', 'secret', '*.secret', 'adminToken', '*.adminToken', 'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization'],
      censor: '[redacted]',
    },
    serializers: {
      err: pino.stdSerializers.err,
      req: (req: { method: string; url: string; ip?: string }) => ({ method: req.method, url: redactUrl(req.url), remoteAddress: req.ip }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
