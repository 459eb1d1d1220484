/**
 * Frame bodies being received or verified, in all and per client address. The total bounds the
 * memory and CPU all callers together can hold (each body up to 1 MiB); the share per address
 * keeps one caller from taking every slot, so that slow bodies from one address no longer turn
 * everyone else's frames away.
 */
export class InFlightBodies {
  private total = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly maxPerAddress: number,
  ) {}

  /**
   * Takes a slot for a body from `address`, or says which bound is full. The returned release
   * must be called exactly once, when the request is over.
   */
  acquire(address: string): { release: () => void } | { full: 'address' | 'total' } {
    const mine = this.byAddress.get(address) ?? 0;
    if (mine >= this.maxPerAddress) return { full: 'address' };
    if (this.total >= this.max) return { full: 'total' };
    this.total++;
    this.byAddress.set(address, mine + 1);
    return {
      release: () => {
        this.total--;
        const left = this.byAddress.get(address)! - 1;
        // An address with nothing in flight leaves the map: it does not grow with every caller ever seen.
        if (left === 0) this.byAddress.delete(address);
        else this.byAddress.set(address, left);
      },
    };
  }
}
