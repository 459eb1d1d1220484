/**
 * What a sensor id (= device id) may be, wherever one arrives: a JSON reading (HTTP or stream),
 * a device registration, a route's path, a frame's payload `device_id`. One rule, so that an id
 * that is stored can be told apart and addressed again: 1 to 256 characters, none of them a
 * control character (C0, DEL, C1), a zero-width one (U+200B–U+200D, U+2060, U+FEFF) or a
 * bidirectional control (U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which would make two ids
 * look alike or hide what an id says.
 */
export const MAX_SENSOR_ID_LENGTH = 256;

// eslint-disable-next-line no-control-regex -- refusing control characters is this pattern's purpose
export const SENSOR_ID_PATTERN = /^[^\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]*$/;

export function isSensorId(id: string): boolean {
  return id.length >= 1 && id.length <= MAX_SENSOR_ID_LENGTH && SENSOR_ID_PATTERN.test(id);
}
