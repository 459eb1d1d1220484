import { Redis } from 'ioredis';
import { encodeFrame, pressurePayload } from '../src/nanogridata/encoder.js';

const secret = Buffer.from(process.env.NANOGRIDATA_SECRET_10!, 'hex');
const frame = encodeFrame({ modelId: 0x10, level: 1, timestamp: Math.floor(Date.now() / 1000), secret,
  payload: pressurePayload({ deviceId: 'TS-001', entries: [{ value: 101325 }] }) });
const redis = new Redis(process.env.REDIS_URL!);
console.log(await redis.xadd('ocean:frames', '*', 'frame', frame));   // binary-safe
redis.disconnect();
