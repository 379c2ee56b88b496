import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { MasterKeyService } from '@app/config';
import { randomBytes } from 'node:crypto';
import { CryptoKey, exportJWK, generateKeyPair, importJWK, JWK } from 'jose';
import { Repository } from 'typeorm';
import { SigningKeyEntity } from './entities/signing-key.entity';

export const SIGNING_ALGORITHM = 'ES256';
const ENCRYPTION_PURPOSE = 'signing-key-encryption';
const REFRESH_INTERVAL_MS = 5_000;
const UNKNOWN_KID_RELOAD_MS = 1000;

interface LoadedKey {
  kid: string;
  publicKey: CryptoKey;
  privateKey: CryptoKey;
  publicJwk: JWK;
  createdAt: Date;
}

/**
 * The JWT signing keys: generated on first start, kept in the database with the private half
 * encrypted, rotated with `npm run cli -- keys:rotate`. Every instance signs with the newest and
 * verifies with all; an unknown kid makes it look in the database again (at most once a second).
 */
@Injectable()
export class SigningKeysService implements OnApplicationBootstrap {
  private readonly logger = new Logger(SigningKeysService.name);
  private keys = new Map<string, LoadedKey>();
  private active: LoadedKey | undefined;
  private loadedAt = 0;
  private lastUnknownReload = 0;

  constructor(
    @InjectRepository(SigningKeyEntity) private readonly repo: Repository<SigningKeyEntity>,
    private readonly masterKey: MasterKeyService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.repo.manager.transaction(async (manager) => {
      await manager.query(`SELECT pg_advisory_xact_lock(hashtext('um:signing-keys'))`);
      if ((await manager.count(SigningKeyEntity)) === 0) await this.generate(manager.getRepository(SigningKeyEntity));
    });
    await this.load();
  }

  /** Adds a new signing key; older keys keep verifying the tokens they signed. */
  async rotate(): Promise<string> {
    const kid = await this.generate(this.repo);
    await this.load();
    return kid;
  }

  async signingKey(): Promise<{ kid: string; privateKey: CryptoKey }> {
    if (!this.active || Date.now() - this.loadedAt > REFRESH_INTERVAL_MS) await this.load();
    return this.active!;
  }

  async verificationKey(kid: string): Promise<CryptoKey | undefined> {
    const known = this.keys.get(kid);
    if (known) return known.publicKey;
    if (Date.now() - this.lastUnknownReload < UNKNOWN_KID_RELOAD_MS) return undefined;
    this.lastUnknownReload = Date.now();
    await this.load();
    return this.keys.get(kid)?.publicKey;
  }

  publicJwks(): { keys: JWK[] } {
    return { keys: [...this.keys.values()].map((k) => k.publicJwk) };
  }

  private async generate(repo: Repository<SigningKeyEntity>): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair(SIGNING_ALGORITHM, { extractable: true });
    const kid = `k_${new Date().toISOString().slice(0, 10).replace(/-/g, '')}_${randomBytes(6).toString('hex')}`;
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: SIGNING_ALGORITHM, use: 'sig' };
    const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: SIGNING_ALGORITHM };
    await repo.insert({
      kid,
      algorithm: SIGNING_ALGORITHM,
      publicJwk,
      privateKeyEncrypted: this.masterKey.encrypt(ENCRYPTION_PURPOSE, JSON.stringify(privateJwk)),
      createdAt: new Date(),
    });
    this.logger.log({ kid }, 'Generated a new JWT signing key');
    return kid;
  }

  private async load(): Promise<void> {
    const rows = await this.repo.find({ order: { createdAt: 'ASC' } });
    const keys = new Map<string, LoadedKey>();
    for (const row of rows) {
      const existing = this.keys.get(row.kid);
      if (existing) {
        keys.set(row.kid, existing);
        continue;
      }
      const privateJwk = JSON.parse(this.masterKey.decrypt(ENCRYPTION_PURPOSE, row.privateKeyEncrypted)) as JWK;
      keys.set(row.kid, {
        kid: row.kid,
        publicKey: (await importJWK(row.publicJwk as JWK, row.algorithm)) as CryptoKey,
        privateKey: (await importJWK(privateJwk, row.algorithm)) as CryptoKey,
        publicJwk: row.publicJwk as JWK,
        createdAt: row.createdAt,
      });
    }
    this.keys = keys;
    this.active = [...keys.values()].at(-1);
    this.loadedAt = Date.now();
  }
}
