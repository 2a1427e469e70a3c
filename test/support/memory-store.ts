// The core's Store port in memory, with switches to make reads or writes fail.
import type { Store } from '../../src/ports.js';

export class MemoryStore implements Store {
  readonly values = new Map<string, string>();
  failGet: Error | undefined;
  failSet: Error | undefined;
  async get(key: string) {
    if (this.failGet) throw this.failGet;
    return this.values.get(key);
  }
  async set(key: string, value: string) {
    if (this.failSet) throw this.failSet;
    this.values.set(key, value);
  }
  async delete(key: string) {
    this.values.delete(key);
  }
}
