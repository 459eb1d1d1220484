import { PassThrough } from 'node:stream';
import type { preParsingHookHandler } from 'fastify';
import { AppError } from '../errors.js';

/**
 * A preParsing hook that cuts off a body arriving slower than `bytesPerS`: after the first
 * `graceMs` of the body, it must have delivered at least bytesPerS × (time − grace) bytes. Without
 * it a client trickling a byte a second holds its in-flight slot until REQUEST_TIMEOUT_MS. The
 * answer is 408 (the connection closes, since the rest of the body is not read).
 *
 * One timer per body, set to the moment the bytes received so far stop being enough: no polling,
 * and a fast body never sees it fire.
 */
export function minimumBodyRate(options: { bytesPerS: number; graceMs: number }): preParsingHookHandler {
  const { bytesPerS, graceMs } = options;
  return (request, reply, payload, done) => {
    if (bytesPerS === 0) {
      done(null, payload);
      return;
    }
    const start = performance.now();
    let received = 0;
    const body = new PassThrough();
    const check = () => {
      const due = graceMs + (received / bytesPerS) * 1000;
      const now = performance.now() - start;
      if (now < due) {
        timer = setTimeout(check, Math.ceil(due - now));
        return;
      }
      payload.unpipe(body);
      body.destroy(new AppError('body_too_slow', 408, `the body arrived slower than ${bytesPerS} bytes/s: send it faster, or in smaller bodies`));
    };
    let timer = setTimeout(check, graceMs);
    const stop = () => clearTimeout(timer);
    payload.on('data', (chunk: Buffer) => (received += chunk.length));
    body.once('end', stop);
    body.once('close', stop);
    // Once an answer is out (a 413 on Content-Length before the body was read, say), the body is
    // no one's to read: it must not hold the request back by backpressure (the 413's drain reads
    // the request itself), nor be cut later.
    reply.raw.once('finish', () => {
      stop();
      payload.unpipe(body);
    });
    request.raw.once('close', stop);
    // pipe() does not pass errors on: a client that goes away mid-body must still end the read.
    payload.once('error', (err) => body.destroy(err));
    // The cut reaches the client through Fastify's body reader when it reads; when nothing reads
    // any more, an 'error' without a listener would end the process.
    body.on('error', () => {});
    payload.pipe(body);
    done(null, body);
  };
}
