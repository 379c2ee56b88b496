import type { EntityManager } from 'typeorm';

/** What listeners learn about a user: never a password hash or any other secret. */
export interface UserEventSnapshot {
  id: string;
  email: string;
  first_name: string;
  last_name: string;
  role: string | null;
  status: string;
  email_verified: boolean;
  created_at: string;
  updated_at: string;
}

/** The domain events of CONTRACT §9, by name, with the data each carries. */
export interface DomainEventMap {
  'user.created': { user: UserEventSnapshot; send_welcome_email?: boolean };
  'user.updated': { user: UserEventSnapshot; changes: string[] };
  /** A permanent delete names the user by id only: their personal data is gone (CONTRACT §6). */
  'user.deleted': { user: Pick<UserEventSnapshot, 'id'> & { email?: string }; soft_delete: boolean; deleted_at: string };
  'user.login': { user: UserEventSnapshot; method: 'password' | 'sso'; ip_address?: string; user_agent?: string };
  'user.role_changed': { user: UserEventSnapshot; previous_roles: string[]; roles: string[] };
  /** A transactional email to send; `sealed_link` is encrypted (it carries a single-use token). */
  'email.requested': { template: 'verification' | 'password_reset'; to: string; user_id: string; first_name: string; sealed_link: string };
}

export type DomainEventName = keyof DomainEventMap;
export const DOMAIN_EVENT_NAMES: readonly DomainEventName[] = [
  'user.created',
  'user.updated',
  'user.deleted',
  'user.login',
  'user.role_changed',
];

/** An event as stored in the outbox and handed to listeners. */
export interface DomainEvent<K extends DomainEventName = DomainEventName> {
  id: string;
  type: K;
  organizationId: string;
  occurredAt: Date;
  data: DomainEventMap[K];
}

/**
 * What a listener receives: the event, and the transaction that marks it dispatched,
 * so that work a listener records (a webhook delivery, an audit row) commits with it or not at all.
 */
export interface DispatchedEvent<K extends DomainEventName = DomainEventName> {
  event: DomainEvent<K>;
  manager: EntityManager;
}
