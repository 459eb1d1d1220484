/**
 * The buffers of typed arrays that span their whole ArrayBuffer: those can move to another
 * thread without a copy. A view on part of a buffer (a slice of Node's Buffer pool) cannot move
 * without taking its neighbours along, so structured cloning copies it instead.
 */
export function transferablesOf(views: readonly ArrayBufferView[]): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  for (const v of views) {
    if (v.buffer instanceof ArrayBuffer && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength && v.byteLength > 0) out.add(v.buffer);
  }
  return [...out];
}
