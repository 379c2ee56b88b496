import { Inject, Injectable } from '@nestjs/common';
import { Algorithm, hash, verify } from '@node-rs/argon2';
import { APP_CONFIG, AppConfig } from '@app/config';

/**
 * OWASP's argon2id configurations (Password Storage Cheat Sheet), which it rates as equally strong:
 * memory in KiB → passes, all with one lane. Less memory and more passes suit machines whose caches
 * and memory bandwidth are small or shared: on our 2-vCPU machines 7 MiB × 5 hashes about 1.6 times
 * as fast as 19 MiB × 2, which is @node-rs/argon2's default.
 */
export const OWASP_ARGON2ID_PROFILES: Readonly<Record<number, number>> = { 47104: 1, 19456: 2, 12288: 3, 9216: 4, 7168: 5 };

const ENCODED = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/;

/** argon2id password hashes at the OWASP profile chosen by PASSWORD_HASH_MEMORY_KIB. */
@Injectable()
export class PasswordHasher {
  private readonly options: { algorithm: Algorithm.Argon2id; memoryCost: number; timeCost: number; parallelism: 1 };
  /** Verified against when the user has no password, so that timing does not reveal which emails exist. */
  private dummyHash: Promise<string> | undefined;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    const memoryCost = config.passwordHashMemoryKib;
    this.options = { algorithm: Algorithm.Argon2id, memoryCost, timeCost: OWASP_ARGON2ID_PROFILES[memoryCost]!, parallelism: 1 };
  }

  hash(password: string): Promise<string> {
    return hash(password, this.options);
  }

  async verify(passwordHash: string | null, password: string): Promise<boolean> {
    if (!passwordHash) {
      this.dummyHash ??= this.hash('not-a-real-password');
      await verify(await this.dummyHash, password).catch(() => false);
      return false;
    }
    return verify(passwordHash, password).catch(() => false);
  }

  /** Whether a stored hash was made with other parameters than the configured ones (then rehash it at sign-in). */
  needsRehash(passwordHash: string): boolean {
    const match = ENCODED.exec(passwordHash);
    return !match || Number(match[1]) !== this.options.memoryCost || Number(match[2]) !== this.options.timeCost || Number(match[3]) !== 1;
  }
}
