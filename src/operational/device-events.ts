import type { Db } from './db.js';
import { nowS } from './db.js';
import { isoFromS } from './time.js';

/** Names of the non-telemetry Nanogridata payload types. */
export const PAYLOAD_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: 'telemetry',
  2: 'config',
  3: 'event',
  4: 'command',
  5: 'calibration',
};

export interface DeviceEventInsert {
  /** Unique per transport message: a redelivery is a no-op. */
  sourceId: string;
  deviceId: string;
  payloadType: number;
  /** Frame timestamp, Unix seconds. */
  ts: number;
  body: Record<string, unknown>;
}

export interface DeviceEvent {
  id: number;
  device_id: string;
  payload_type: number;
  type: string;
  /** ISO 8601, UTC. */
  ts: string;
  body: Record<string, unknown>;
  /** ISO 8601, UTC. */
  created_at: string;
}

/** A device_events row as both stores keep it. */
export interface DeviceEventRow {
  id: number;
  device_id: string;
  payload_type: number;
  ts: number;
  body: string;
  created_at: number;
}

export const deviceEventOf = (r: DeviceEventRow): DeviceEvent => ({
  id: r.id,
  device_id: r.device_id,
  payload_type: r.payload_type,
  type: PAYLOAD_TYPE_NAMES[r.payload_type] ?? 'unknown',
  ts: isoFromS(r.ts),
  body: JSON.parse(r.body) as Record<string, unknown>,
  created_at: isoFromS(r.created_at),
});

/** Non-telemetry frames (EVENT, CONFIG, COMMAND, CALIBRATION) kept per device, as sent. */
export function createDeviceEvents(db: Db) {
  const insert = db.prepare<[string, string, number, number, string, number]>(
    `INSERT INTO device_events(source_id, device_id, payload_type, ts, body, created_at) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT(source_id) DO NOTHING`,
  );
  const page = db.prepare<[string, number, number], DeviceEventRow>(
    `SELECT id, device_id, payload_type, ts, body, created_at FROM device_events
     WHERE device_id = ? AND id < ? ORDER BY id DESC LIMIT ?`,
  );

  return {
    /** Stores one event unless its source id is already stored (then returns false). Call inside the batch transaction. */
    add(e: DeviceEventInsert): boolean {
      return insert.run(e.sourceId, e.deviceId, e.payloadType, Math.floor(e.ts), JSON.stringify(e.body), nowS()).changes === 1;
    },
    /** A device's events, newest first; `before` is the id to continue below. */
    list(deviceId: string, options: { limit: number; before?: number }): DeviceEvent[] {
      return page.all(deviceId, options.before ?? Number.MAX_SAFE_INTEGER, options.limit).map(deviceEventOf);
    },
  };
}

export type DeviceEvents = ReturnType<typeof createDeviceEvents>;
