import { pino, type DestinationStream, type Logger } from 'pino';

/** Keeps session tokens passed as ?token= out of the logs. */
const redactUrl = (url: string) => url.replace(/([?&]token=)[^&]*/gi, '$1[redacted]');

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
