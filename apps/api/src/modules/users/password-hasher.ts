import { Algorithm, hash, verify } from '@node-rs/argon2';

/** argon2id at OWASP's parameters (m = 19 MiB, t = 2, p = 1): about 13 ms a hash on a 2-core box. */
const OPTIONS = { algorithm: Algorithm.Argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

/** Verified against when the user has no password, so that timing does not reveal which emails exist. */
let dummyHash: Promise<string> | undefined;

export const PasswordHasher = {
  hash: (password: string): Promise<string> => hash(password, OPTIONS),
  async verify(passwordHash: string | null, password: string): Promise<boolean> {
    if (!passwordHash) {
      dummyHash ??= hash('not-a-real-password', OPTIONS);
      await verify(await dummyHash, password).catch(() => false);
      return false;
    }
    return verify(passwordHash, password).catch(() => false);
  },
};
