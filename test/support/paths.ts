/**
 * Paths every tier needs: the repository root and the CLI entry point, found from this module's
 * place in the build (dist/test/support → three levels up).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** The CLI entry point run by every node. */
export const CLI = join(REPO_ROOT, 'bin', 'wg-overlay.js');
