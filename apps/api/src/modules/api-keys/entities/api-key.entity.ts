import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

@Entity('api_keys')
export class ApiKeyEntity {
  @PrimaryColumn('text')
  id!: string;

  @Index('IDX_api_keys_organization')
  @Column('text')
  organizationId!: string;

  @Column('text')
  name!: string;

  /** The first characters of the key (`sk_live_AbCd`), to recognise it in lists. */
  @Column('text')
  keyPrefix!: string;

  /** HMAC-SHA256 of the whole key under a key derived from the master secret. The key itself is never stored. */
  @Index('UQ_api_keys_key_hash', { unique: true })
  @Column('text')
  keyHash!: string;

  @Column('text', { array: true })
  scopes!: string[];

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;

  @Column('timestamp with time zone', { nullable: true })
  lastUsedAt!: Date | null;

  @Column('timestamp with time zone', { nullable: true })
  revokedAt!: Date | null;
}
