import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SHARED = fileURLToPath(new URL('../../../shared/vectors/nanogridata-v1.jsonl', import.meta.url));
const COPY = fileURLToPath(new URL('../fixtures/nanogridata-v1.jsonl', import.meta.url));

/**
 * The Nanogridata v1 test vectors: the shared contract (../shared/vectors, beside the repository)
 * when it is there, else the copy committed in test/fixtures so a lone clone still tests the codec.
 */
/** Where the shared vectors are, when the repository sits beside shared/. */
export const SHARED_VECTORS_PATH = existsSync(SHARED) ? SHARED : undefined;
export const VECTORS_COPY_PATH = COPY;

export const VECTORS_PATH = existsSync(SHARED) ? SHARED : COPY;
