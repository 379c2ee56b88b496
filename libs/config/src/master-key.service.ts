import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppConfig } from './app-config';

/**
 * The master secret (MASTER_KEY, or DATA_DIR/master.key generated on first start) and the
 * purpose-bound keys derived from it with HKDF: one to key API-key hashes, one to encrypt signing
 * keys at rest, one to sign cursors. Nothing derived is ever logged or returned.
 */
export class MasterKeyService {
  private readonly master: Buffer;
  private readonly derived = new Map<string, Buffer>();

  constructor(config: AppConfig) {
    this.master = Buffer.from(config.masterKey ?? loadOrCreateKeyFile(config.dataDir), 'utf8');
  }

  key(purpose: string): Buffer {
    let key = this.derived.get(purpose);
    if (!key) {
      key = Buffer.from(hkdfSync('sha256', this.master, Buffer.alloc(0), `user-management-api:${purpose}`, 32));
      this.derived.set(purpose, key);
    }
    return key;
  }

  hmac(purpose: string, data: string): string {
    return createHmac('sha256', this.key(purpose)).update(data, 'utf8').digest('base64url');
  }

  /** Constant-time comparison of two strings (equal length or not). */
  static safeEqual(a: string, b: string): boolean {
    const left = Buffer.from(a);
    const right = Buffer.from(b);
    return left.length === right.length && timingSafeEqual(left, right);
  }

  encrypt(purpose: string, plaintext: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key(purpose), iv);
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join('.');
  }

  decrypt(purpose: string, sealed: string): string {
    const [version, iv, tag, body] = sealed.split('.');
    if (version !== 'v1' || !iv || !tag || body === undefined) throw new Error('Unknown sealed format');
    const decipher = createDecipheriv('aes-256-gcm', this.key(purpose), Buffer.from(iv, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
  }
}

function loadOrCreateKeyFile(dataDir: string): string {
  const file = join(dataDir, 'master.key');
  mkdirSync(dataDir, { recursive: true });
  try {
    // Exclusive create: when two processes start at once, one writes and both read the same key.
    writeFileSync(file, randomBytes(32).toString('base64url'), { flag: 'wx', mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return readFileSync(file, 'utf8').trim();
}
