/**
 * The WireGuard key format as the pure core checks it: canonical base64 of exactly 32 bytes.
 */

/** Canonical base64 of exactly 32 bytes: 43 characters (the last with 2 zero low bits) and `=`. */
const KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** Whether `s` is a WireGuard key: the canonical 44-character base64 form of exactly 32 bytes. */
export function isValidKey(s: string): boolean {
  return KEY_RE.test(s);
}
