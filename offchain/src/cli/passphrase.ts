import { readFile } from "node:fs/promises";

/** --passphrase-file wins over CELL_PASSPHRASE; a trailing newline is not part of it. */
export async function readPassphrase(file: string | undefined): Promise<string | undefined> {
  if (file !== undefined) return readPassphraseFile(file);
  const fromEnv = process.env.CELL_PASSPHRASE;
  return fromEnv === undefined || fromEnv.length === 0 ? undefined : fromEnv;
}

/** The first line of a passphrase file; an unreadable or empty file is an error naming it. */
export async function readPassphraseFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new Error(
      `cannot read passphrase file ${file}: ${(error as NodeJS.ErrnoException).code ?? "unreadable"}`,
      { cause: error },
    );
  }
  const passphrase = text.split(/\r?\n/, 1)[0] ?? "";
  if (passphrase.length === 0) throw new Error(`passphrase file ${file} is empty`);
  return passphrase;
}
