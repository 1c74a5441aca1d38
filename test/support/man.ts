/** Man page output as plain text, for tests that read what `man` prints. */

/** `man`'s output without its overstrikes (a character, a backspace, the character again for bold; `_`, backspace for underline). */
export function plainMan(text: string): string {
  return text.replace(/.[\b]/g, '');
}
