import { Column, Entity, PrimaryColumn } from 'typeorm';

/** A JWT signing key pair. The newest signs; all verify until their tokens can no longer be alive. */
@Entity('signing_keys')
export class SigningKeyEntity {
  @PrimaryColumn('text')
  kid!: string;

  @Column('text')
  algorithm!: string;

  @Column('jsonb')
  publicJwk!: Record<string, unknown>;

  /** The private JWK, AES-256-GCM encrypted under a key derived from the master secret. */
  @Column('text')
  privateKeyEncrypted!: string;

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;
}
