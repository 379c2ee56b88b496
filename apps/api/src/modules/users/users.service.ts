import { Inject, Injectable } from '@nestjs/common';
import { AppException, assertIfMatch, canonicalJson, CursorCodec, ErrorDetail, expectedVersion, findUnstorableText, ifMatchVersions, staleIfMatch, toAppException } from '@app/common';
import { MasterKeyService } from '@app/config';
import { TransactionRunner } from '@app/database';
import { EventPublisher, newId } from '@app/events';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { createHash } from 'node:crypto';
import { EntityManager } from 'typeorm';
import { TokenDenylist } from '../auth/denylist/token-denylist.service';
import { DEFAULT_ROLE_NAME } from '../roles/built-in-roles';
import { RoleSummary } from '../roles/roles.repository';
import { RolesService } from '../roles/roles.service';
import { OrganizationsService } from '../organizations/organizations.service';
import { BulkCreateUsersDto, CreateUserDto, ListUsersQuery, SearchUsersQuery, UpdateOwnProfileDto, UpdateUserDto } from './dto/user.dto';
import { PasswordHasher } from './password-hasher';
import { SearchIndexCleanup } from './search-index-cleanup.service';
import { SearchTrigramStats } from './search-trigram-stats.service';
import { UserUpdateBatcher } from './user-update-batcher';
import { UserCreateBatcher } from './user-create-batcher';
import {
  keysetCondition,
  orderBy,
  sortJoin,
  parseFields,
  parseFilters,
  parseSort,
  searchWords,
  SortKey,
  sortValueColumns,
  SqlParams,
  textSearchConditions,
} from './user-query';
import { mapUserSummary, projectUser, userSnapshot } from './users.mapper';
import { CredentialTokensRepository } from './credential-tokens.repository';
import { BulkInsertOutcome, endsSessions, NewUser, UserCreate, UserRecord, UsersRepository } from './users.repository';

const USER_ID = /^user_[a-z0-9]{1,64}$/;
/** Offset-mode totals are exact, and reused for this long unless this instance changes the org's users. */
const TOTAL_CACHE_MS = 5000;
/** Keyset-mode totals are exact up to this many matches, the planner's estimate beyond. */
const EXACT_ESTIMATE_CAP = 1000;
/** Keyset-mode estimates are reused this long. */
const ESTIMATE_CACHE_MS = 30_000;
const DEFAULT_SORT: SortKey[] = [{ field: 'created_at', direction: 'desc' }];

interface CursorPosition<S> {
  /** The query the cursor belongs to (sort and filters). */
  q: S;
  /** Sort values and id of the last row returned. */
  v: string[];
  id: string;
  /** The total (or estimate) when the walk began. */
  t: number;
}

interface ListShape extends Record<string, string | undefined> {
  sort: string | undefined;
  status: string | undefined;
  role: string | undefined;
  search: string | undefined;
}

interface SearchShape extends Record<string, string | undefined> {
  sort: string | undefined;
  q: string | undefined;
  filters: string | undefined;
  fields: string | undefined;
}

/** Sort parameters compared by meaning: "email:asc", ["email:asc"] and "email" are the same. */
function normalizeSort(raw: string | undefined): string {
  return parseSort(raw, DEFAULT_SORT).map((k) => `${k.field}:${k.direction}`).join(',');
}

/**
 * Whether a parameter sent with a cursor asks for what the cursor's query asked: `q` and `search`
 * as their words (other spacing is the same search), `filters` as the JSON they parse to (other key
 * order or spacing is the same filter), `fields` as a set, anything else (sort, already normalized;
 * status, role) as sent. The page is built from the cursor's own text either way.
 */
function sameParameter(key: string, sent: string, made: string | undefined): boolean {
  if (made === undefined) return false;
  if (sent === made) return true;
  if (key === 'q' || key === 'search') return searchWords(sent).join(' ') === searchWords(made).join(' ');
  if (key === 'filters') {
    try {
      return canonicalJson(JSON.parse(sent)) === canonicalJson(JSON.parse(made));
    } catch {
      return false;
    }
  }
  // The same set of fields, however listed (JSON array or comma list, any order or spacing).
  if (key === 'fields') {
    try {
      const set = (raw: string) => [...(parseFields(raw) ?? [])].sort().join(',');
      return set(sent) === set(made);
    } catch {
      return false;
    }
  }
  return false;
}

export interface BulkItemResult {
  index: number;
  success: boolean;
  user?: Record<string, unknown>;
  error?: { code: string; message: string; details?: unknown };
}

/** A bulk item that passed validation, with its email as the unique index compares it. */
interface BulkCandidate {
  index: number;
  dto: CreateUserDto;
  emailKey: string;
}

@Injectable()
export class UsersService {
  private readonly cursors: CursorCodec;
  private readonly totals = new Map<string, Map<string, { total: Promise<number>; at: number }>>();

  constructor(
    private readonly users: UsersRepository,
    private readonly roles: RolesService,
    private readonly transactions: TransactionRunner,
    private readonly events: EventPublisher,
    private readonly denylist: TokenDenylist,
    private readonly organizations: OrganizationsService,
    private readonly passwords: PasswordHasher,
    private readonly credentials: CredentialTokensRepository,
    private readonly searchTrigrams: SearchTrigramStats,
    private readonly searchIndexCleanup: SearchIndexCleanup,
    private readonly updates: UserUpdateBatcher,
    private readonly creates: UserCreateBatcher,
    @Inject(MasterKeyService) masterKey: MasterKeyService,
  ) {
    this.cursors = new CursorCodec(masterKey.key('cursor-signing'));
  }

  /** The part of a search word the trigram index looks up (search-trigrams.ts); asked once for each word the index serves. */
  private readonly indexedPart = (word: string) => {
    this.searchIndexCleanup.noteSearch();
    return this.searchTrigrams.indexedPart(word);
  };

  /**
   * Runs `work` knowing how many more users may become active this month (CONTRACT §5): Infinity
   * when the plan has no limit (or `userId` is active already). Under a limit, `work` runs in a
   * transaction holding the organization's active-users lock, and must write through `manager`:
   * the count and the writes that add to it are one step, so concurrent creates, bulk items and
   * first sign-ins of the month never pass the limit together. Without a limit nothing is locked.
   */
  async withActiveUsersCapacity<T>(organizationId: string, userId: string | undefined, work: (capacity: number, manager?: EntityManager) => Promise<T>): Promise<T> {
    const { monthly_active_users: limit } = await this.organizations.limitsFor(organizationId);
    if (limit === null) return work(Infinity);
    // A user active this month already adds nothing: no lock (sign-ins of active users never queue).
    if (userId !== undefined && (await this.users.isActiveThisMonth(organizationId, userId))) return work(Infinity);
    return this.transactions.run(async (manager) => {
      await this.users.lockActiveUsers(manager, organizationId);
      const active = await this.users.activeThisMonth(organizationId, userId, manager);
      return work(active.includesUser ? Infinity : Math.max(0, limit - active.count), manager);
    });
  }

  static quotaExceeded(): AppException {
    return new AppException('QUOTA_EXCEEDED', "The organization's plan allows no more monthly active users this month", {
      details: { limit: 'monthly_active_users' },
    });
  }

  /**
   * One round trip to the database (UsersRepository.createOne, or createMany shared with concurrent
   * creates through UserCreateBatcher): the role check, the insert, the monthly-activity row and
   * the outbox event are one statement, atomic without BEGIN/COMMIT.
   */
  async create(organizationId: string, dto: CreateUserDto): Promise<UserRecord> {
    const roleRef = dto.role ?? DEFAULT_ROLE_NAME;
    const passwordHash = dto.password ? await this.passwords.hash(dto.password) : null;
    return this.withActiveUsersCapacity(organizationId, undefined, async (capacity, manager) => {
      if (capacity < 1) throw UsersService.quotaExceeded();
      return this.insertOne(organizationId, dto, roleRef, passwordHash, manager);
    });
  }

  private async insertOne(organizationId: string, dto: CreateUserDto, roleRef: string, passwordHash: string | null, manager?: EntityManager): Promise<UserRecord> {
    const createdAt = new Date();
    const newUser: NewUser = { id: newId('user'), email: dto.email, firstName: dto.first_name, lastName: dto.last_name, roleId: null, passwordHash, metadata: dto.metadata ?? {} };
    // `user.role` is filled in by the statement from the role it finds.
    const event = this.events.draft(
      organizationId,
      'user.created',
      { user: userSnapshot(newUserRecord(organizationId, newUser, createdAt)), send_welcome_email: dto.send_welcome_email ?? false },
      createdAt,
    );
    const create: UserCreate = { organizationId, user: newUser, roleRef, createdAt, event };
    // In the monthly-active-users limit's transaction, alone; otherwise it may share a statement
    // with concurrent creates (UserCreateBatcher).
    const { role, user } = await this.writeStatement(organizationId, () => (manager ? this.users.createOne(create, manager) : this.creates.run(create)));
    if (!role) throw RolesService.unknownRoles([roleRef], 'role');
    if (!user) throw new AppException('USER_ALREADY_EXISTS', 'A user with this email already exists');
    this.transactions.committed();
    // The new user has exactly the one role just found: no read-back needed.
    return { ...user, role_name: role.name, roles: [role] };
  }

  async get(organizationId: string, id: string, options: { includeDeleted?: boolean } = {}): Promise<UserRecord> {
    const user = USER_ID.test(id) ? await this.users.findDetailed(organizationId, id) : undefined;
    if (!user || (user.deleted_at && !options.includeDeleted)) throw new AppException('USER_NOT_FOUND', 'User not found');
    return user;
  }

  /**
   * Changes only what the request sends. Without a role, one statement does it all
   * (UsersRepository.updateFields: lock, compare, write, activity, user.updated), shared with
   * concurrent updates of other users under load (UserUpdateBatcher); concurrent updates of one
   * user queue on the row and none is lost. A role change runs in a transaction, as its events need the
   * user's new set of roles read back. A stale or foreign If-Match is 409 CONCURRENT_UPDATE.
   */
  async update(organizationId: string, id: string, dto: UpdateUserDto | UpdateOwnProfileDto, ifMatch?: string): Promise<UserRecord> {
    if ('role' in dto && dto.role !== undefined) return this.updateLocked(organizationId, id, dto, ifMatch);
    if (!USER_ID.test(id)) throw new AppException('USER_NOT_FOUND', 'User not found');
    // One ETag of this user: compared in the statement. Several: the current version decides which.
    const listed = ifMatchVersions(ifMatch, id);
    const expected = listed && listed.length > 1 ? expectedVersion(ifMatch, id, (await this.get(organizationId, id)).version) : expectedVersion(ifMatch, id);
    if (expected === -1) {
      await this.get(organizationId, id); // 404 first when there is no such user
      throw UsersService.staleIfMatch();
    }
    const fields = {
      first_name: dto.first_name ?? null,
      last_name: dto.last_name ?? null,
      status: ('status' in dto ? dto.status : undefined) ?? null,
      metadata: dto.metadata ?? null,
      preferences: ('preferences' in dto ? dto.preferences : undefined) ?? null,
    };
    const update = { organizationId, id, fields, expectedVersion: expected, updatedAt: new Date(), eventId: newId('evt') };
    // An update that ends sessions runs alone (its statement also revokes refresh tokens); the
    // others may share a statement with concurrent updates (UserUpdateBatcher).
    const result = await this.writeStatement(organizationId, () =>
      endsSessions(fields.status) ? this.users.updateFields(organizationId, id, fields, update) : this.updates.run(update),
    );
    if (!result) throw new AppException('USER_NOT_FOUND', 'User not found');
    if (!result.written) {
      // Nothing changed, or If-Match named another version (then nothing was written either).
      if (expected !== undefined && expected !== result.version) throw UsersService.staleIfMatch();
      // Read after the statement: a write that came in between must not be answered under the old If-Match.
      const user = await this.get(organizationId, id);
      this.assertIfMatch(user, ifMatch);
      return user;
    }
    const { user, changed } = result;
    this.transactions.committed();
    // The statement revoked the refresh tokens; access tokens are denied from now on.
    if (changed.includes('status') && endsSessions(user.status)) await this.denylist.revokeSubject(id, organizationId);
    return user;
  }

  static staleIfMatch(): AppException {
    return staleIfMatch('user');
  }

  /**
   * What `dto` changes on `current`: columns, and the names of the fields changed (for
   * user.updated). The role is read through `manager`, the transaction that holds the user's row.
   */
  private async changesFor(organizationId: string, current: UserRecord, dto: UpdateUserDto | UpdateOwnProfileDto, manager: EntityManager) {
    const changes: Record<string, unknown> = {};
    const changed: string[] = [];
    if ('role' in dto && dto.role !== undefined) {
      const [newRole] = await this.roles.resolve(organizationId, [dto.role], 'role', manager);
      if (newRole!.id !== current.role_id) {
        changes.role_id = newRole!.id;
        changed.push('role');
      }
    }
    const simple: [keyof (UpdateUserDto & UpdateOwnProfileDto), string][] = [
      ['first_name', 'first_name'],
      ['last_name', 'last_name'],
      ['status', 'status'],
    ];
    for (const [field, column] of simple) {
      const value = (dto as Record<string, unknown>)[field];
      if (value !== undefined && value !== (current as unknown as Record<string, unknown>)[column]) {
        changes[column] = value;
        changed.push(field);
      }
    }
    if (dto.metadata !== undefined) {
      changes.metadata = dto.metadata;
      for (const key of new Set([...Object.keys(current.metadata), ...Object.keys(dto.metadata)])) {
        if (JSON.stringify(current.metadata[key]) !== JSON.stringify(dto.metadata[key])) changed.push(`metadata.${key}`);
      }
    }
    if ('preferences' in dto && dto.preferences !== undefined) {
      changes.preferences = dto.preferences;
      changed.push('preferences');
    }
    return Object.keys(changes).length === 0 ? undefined : { changes, changed };
  }

  /**
   * An update in a transaction with the user's row locked (role changes, preferences). `dto` may be worked out from the locked
   * user (a preferences merge), so concurrent read-modify-writes queue and none is lost.
   */
  private async updateLocked(
    organizationId: string,
    id: string,
    dto: UpdateUserDto | UpdateOwnProfileDto | ((current: UserRecord) => UpdateOwnProfileDto),
    ifMatch?: string,
  ): Promise<UserRecord> {
    let changes: Record<string, unknown> = {};
    let lostPermissions = false;
    const user = await this.write(organizationId, async (manager) => {
      // A new role is held before the user's row, as in changeRoles.
      if (typeof dto !== 'function' && 'role' in dto && dto.role !== undefined) await this.roles.holdRoles(organizationId, [dto.role], manager);
      const current = await this.users.findDetailed(organizationId, id, manager, { lock: true });
      if (!current || current.deleted_at) throw new AppException('USER_NOT_FOUND', 'User not found');
      this.assertIfMatch(current, ifMatch);
      const change = await this.changesFor(organizationId, current, typeof dto === 'function' ? dto(current) : dto, manager);
      if (!change) return current;
      changes = change.changes;
      await this.users.update(manager, organizationId, id, changes);
      // In the same transaction as the status, so that no failure after the commit leaves an old
      // session to come back when the user is reactivated.
      if (endsSessions(changes.status)) await this.credentials.revokeUserRefreshTokens(manager, organizationId, id);
      await this.users.markActive(manager, organizationId, [id]);
      const updated = (await this.users.findDetailed(organizationId, id, manager))!;
      await this.events.publish(manager, organizationId, 'user.updated', { user: userSnapshot(updated), changes: change.changed });
      if (changes.role_id) {
        lostPermissions = losesPermissions(current, updated);
        await this.events.publish(manager, organizationId, 'user.role_changed', {
          user: userSnapshot(updated),
          previous_roles: (current.roles ?? []).map((r) => r.name),
          roles: (updated.roles ?? []).map((r) => r.name),
        });
      }
      return updated;
    });
    if (lostPermissions || endsSessions(changes.status)) await this.denylist.revokeSubject(id, organizationId);
    return user;
  }

  /**
   * Soft delete (the user keeps their data and email, and remembers their status for a restore), or
   * permanent delete, which also takes a soft-deleted user away for good.
   */
  async delete(organizationId: string, id: string, soft: boolean, ifMatch?: string): Promise<{ deleted_at: string }> {
    // Without If-Match, a request that lost a race reads the user again: gone (or already soft
    // deleted) is 404, changed meanwhile is deleted on its new version. 409 is for a stale If-Match.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.deleteOnce(organizationId, id, soft, ifMatch);
      } catch (error) {
        const lostRace = error instanceof AppException && error.code === 'CONCURRENT_UPDATE' && ifMatch === undefined;
        if (!lostRace || attempt === 10) throw error;
      }
    }
  }

  private async deleteOnce(organizationId: string, id: string, soft: boolean, ifMatch: string | undefined): Promise<{ deleted_at: string }> {
    const current = await this.get(organizationId, id, { includeDeleted: !soft });
    const expected = this.assertIfMatch(current, ifMatch);
    const deletedAt = new Date();
    await this.write(organizationId, async (manager) => {
      const done = soft
        ? // On the version read (If-Match, when sent, named it), so the status remembered for a restore is the one replaced.
          await this.users.update(manager, organizationId, id, { status: 'deleted', deleted_at: deletedAt, status_before_delete: current.status }, current.version)
        : await this.users.delete(manager, organizationId, id, expected);
      if (!done) throw new AppException('CONCURRENT_UPDATE', 'The user was changed by another request; fetch it again');
      // A restore must not bring the deleted user's sessions back (a hard delete removes them).
      if (soft) await this.credentials.revokeUserRefreshTokens(manager, organizationId, id);
      await this.events.publish(manager, organizationId, 'user.deleted', {
        user: soft ? { id, email: current.email } : { id },
        soft_delete: soft,
        deleted_at: deletedAt.toISOString().replace(/\.\d{3}Z$/, 'Z'),
      });
    });
    await this.denylist.revokeSubject(id, organizationId);
    return { deleted_at: deletedAt.toISOString().replace(/\.\d{3}Z$/, 'Z') };
  }

  async restore(organizationId: string, id: string, ifMatch?: string): Promise<UserRecord> {
    const current = await this.get(organizationId, id, { includeDeleted: true });
    this.assertIfMatch(current, ifMatch);
    if (!current.deleted_at) return current;
    return this.write(organizationId, async (manager) => {
      // On the user's row as locked now, not as read above: a change in between (a role deleted,
      // another restore, a delete for good) is seen, and If-Match is checked against it.
      const locked = await this.users.findDetailed(organizationId, id, manager, { lock: true });
      if (!locked) throw new AppException('USER_NOT_FOUND', 'User not found');
      this.assertIfMatch(locked, ifMatch);
      if (!locked.deleted_at) return locked;
      // Back to the status it had: a suspended user comes back suspended.
      await this.users.update(manager, organizationId, id, { status: locked.status_before_delete ?? 'active', deleted_at: null, status_before_delete: null });
      const user = (await this.users.findDetailed(organizationId, id, manager))!;
      await this.events.publish(manager, organizationId, 'user.updated', { user: userSnapshot(user), changes: ['status'] });
      return user;
    });
  }

  async addRoles(organizationId: string, id: string, refs: string[]): Promise<UserRecord> {
    await this.get(organizationId, id); // a missing user is 404 before an unknown role's 422
    await this.roles.resolve(organizationId, refs, 'roles'); // 422 for an unknown role before any lock
    return this.changeRoles(organizationId, id, undefined, (manager, locked, roles) =>
      this.users.addRoles(manager, organizationId, id, roles.map((r) => r.id).filter((r) => r !== locked.role_id)),
      refs,
    );
  }

  async removeRole(organizationId: string, id: string, ref: string, ifMatch?: string): Promise<UserRecord> {
    return this.changeRoles(organizationId, id, ifMatch, async (manager, current) => {
      const role = (current.roles ?? []).find((r) => r.id === ref || r.name === ref);
      if (!role) throw new AppException('ROLE_NOT_FOUND', 'The user does not have this role');
      if (role.id === current.role_id) {
        // Removing the primary role: the user keeps no primary role.
        await this.users.update(manager, organizationId, id, { role_id: null });
      } else {
        await this.users.removeRole(manager, organizationId, id, role.id);
      }
    }, [], [ref]);
  }

  /**
   * A change to a user's set of roles, on the user's locked row: with If-Match only if it names the
   * current version; when the set changed, the user gets a new version (ETag) and user.role_changed.
   */
  private async changeRoles(
    organizationId: string,
    id: string,
    ifMatch: string | undefined,
    change: (m: EntityManager, current: UserRecord, roles: RoleSummary[]) => Promise<void>,
    assigned: string[] = [],
    removed: string[] = [],
  ): Promise<UserRecord> {
    if (!USER_ID.test(id)) throw new AppException('USER_NOT_FOUND', 'User not found');
    let lostPermissions = false;
    const user = await this.write(organizationId, async (manager) => {
      // The roles being assigned are held before the user's row (RoleManagementService.delete holds
      // the role, then its holders' rows): a role deleted meanwhile is 422, never left dangling.
      const roles = assigned.length > 0 ? await this.roles.resolve(organizationId, assigned, 'roles', manager, { lock: true }) : [];
      if (removed.length > 0) await this.roles.holdRoles(organizationId, removed, manager);
      const current = await this.users.findDetailed(organizationId, id, manager, { lock: true });
      if (!current || current.deleted_at) throw new AppException('USER_NOT_FOUND', 'User not found');
      this.assertIfMatch(current, ifMatch);
      await change(manager, current, roles);
      const before = (current.roles ?? []).map((r) => r.name);
      let updated = (await this.users.findDetailed(organizationId, id, manager))!;
      const after = (updated.roles ?? []).map((r) => r.name);
      if (before.join() === after.join()) return updated;
      if (updated.version === current.version) {
        await this.users.update(manager, organizationId, id, {});
        updated = (await this.users.findDetailed(organizationId, id, manager))!;
      }
      await this.events.publish(manager, organizationId, 'user.role_changed', { user: userSnapshot(updated), previous_roles: before, roles: after });
      lostPermissions = losesPermissions(current, updated);
      return updated;
    });
    if (lostPermissions) await this.denylist.revokeSubject(id, organizationId);
    return user;
  }

  /**
   * GET /users: offset mode, or keyset mode when a cursor is passed (CONTRACT §7). A cursor carries
   * the sort and filters it was made for, so `?cursor=…` alone continues the walk (seed §8.2);
   * sending other ones with it is 400 INVALID_CURSOR.
   */
  async list(organizationId: string, query: ListUsersQuery) {
    const asked: ListShape = { sort: query.sort === undefined ? undefined : normalizeSort(query.sort), status: query.status, role: query.role, search: query.search };
    const { shape, position } = this.resume('list', organizationId, query.cursor, asked);
    const sort = parseSort(shape.sort, DEFAULT_SORT);
    const params = new SqlParams();
    const where = [`u.organization_id = ${params.p(organizationId)}`];
    if (shape.status === 'deleted') where.push('u.deleted_at IS NOT NULL');
    else {
      where.push('u.deleted_at IS NULL');
      if (shape.status) where.push(`u.status = ${params.valueDependent().p(shape.status)}`);
    }
    if (shape.role) {
      params.valueDependent();
      where.push(`u.role_id IN (SELECT r.id FROM roles r WHERE r.organization_id = ${params.p(organizationId)} AND r.name = ${params.p(shape.role)})`);
    }
    where.push(...textSearchConditions(shape.search, params, this.indexedPart));
    return this.runPage({ kind: 'list', organizationId, shape, position, params, where, sort, limit: query.limit, offset: query.offset, map: (u) => mapUserSummary(u) });
  }

  /** GET /users/search: q, filters, multi-key sort, fields, keyset pagination. */
  async search(organizationId: string, query: SearchUsersQuery) {
    const asked: SearchShape = { sort: query.sort === undefined ? undefined : normalizeSort(query.sort), q: query.q, filters: query.filters, fields: query.fields };
    const { shape, position } = this.resume('search', organizationId, query.cursor, asked);
    const sort = parseSort(shape.sort, DEFAULT_SORT);
    const fields = parseFields(shape.fields);
    const params = new SqlParams();
    const where = [`u.organization_id = ${params.p(organizationId)}`];
    const filters = parseFilters(shape.filters, organizationId, params, this.indexedPart, sort);
    if (!filters.includesDeleted) where.push('u.deleted_at IS NULL');
    where.push(...filters.conditions, ...textSearchConditions(shape.q, params, this.indexedPart));
    return this.runPage({
      kind: 'search', organizationId, shape, position, params, where, sort, limit: query.limit, offset: 0, keysetOnly: true,
      countJoin: filters.readsSignInKeys ? sortJoin(sort) : '',
      map: (u) => (fields ? projectUser(u, fields) : mapUserSummary(u)),
      withRoles: fields?.includes('roles') ?? false,
    });
  }

  /** Decodes a cursor and checks that the request does not contradict the query it was made for. */
  private resume<S extends Record<string, string | undefined>>(kind: string, organizationId: string, cursor: string | undefined, asked: S) {
    if (!cursor) return { shape: { ...asked, sort: normalizeSort(asked.sort) } as S, position: undefined };
    const position = this.cursors.decode<CursorPosition<S>>(cursor, `${kind}:${organizationId}`);
    if (!position || !Array.isArray(position.v) || typeof position.id !== 'string' || typeof position.q !== 'object' || position.q === null) {
      throw new AppException('INVALID_CURSOR', 'The cursor is not valid for this query');
    }
    for (const [key, value] of Object.entries(asked)) {
      if (value !== undefined && !sameParameter(key, value, position.q[key])) {
        throw new AppException('INVALID_CURSOR', `The cursor was made for another ${key}; send the cursor alone or with the same parameters`);
      }
    }
    return { shape: position.q, position };
  }

  private async runPage<S>(page: {
    kind: string;
    organizationId: string;
    shape: S;
    position: CursorPosition<S> | undefined;
    params: SqlParams;
    where: string[];
    sort: SortKey[];
    limit: number;
    offset: number;
    keysetOnly?: boolean;
    /** The join a count over `where` needs (the sort's, when a filter reads the sign-in keys). */
    countJoin?: string;
    map: (u: UserRecord) => Record<string, unknown>;
    withRoles?: boolean;
  }) {
    const { params, sort, limit, position } = page;
    let { where, offset } = page;
    const binding = this.binding(page.kind, page.organizationId, page.shape);
    const keyset = page.keysetOnly === true || position !== undefined;
    // The count, when one is needed, runs over the request's conditions alone, without the page's.
    const countWhere = where;
    const countParams = params.copy();
    if (position) {
      where = [...where, keysetCondition(sort, position.v, position.id, params)];
      offset = 0;
    }
    const rows = await this.users.page(params, where, orderBy(sort), sortValueColumns(sort), limit + 1, offset, sortJoin(sort));
    const hasMore = rows.length > limit;
    let total: number;
    if (position) {
      total = Number(position.t) || 0;
    } else if (!hasMore && (rows.length > 0 || offset === 0)) {
      // This page reaches the end: the total is known without counting (a search that finds one user).
      total = offset + rows.length;
    } else if (keyset) {
      total = await this.cachedTotal(page.organizationId, binding, ESTIMATE_CACHE_MS, () => this.users.countOrEstimate(countParams, countWhere, EXACT_ESTIMATE_CAP, page.countJoin));
    } else {
      total = await this.cachedTotal(page.organizationId, binding, TOTAL_CACHE_MS, () => this.users.count(countParams, countWhere, page.countJoin));
    }
    const pageRows = rows.slice(0, limit);
    if (page.withRoles && pageRows.length > 0) {
      const roles = await this.users.rolesOfUsers(page.organizationId, pageRows.map((r) => r.id));
      for (const row of pageRows) row.roles = roles.get(row.id) ?? [];
    }
    const last = pageRows[pageRows.length - 1];
    const nextCursor =
      hasMore && last
        ? this.cursors.encode(`${page.kind}:${page.organizationId}`, {
            q: page.shape,
            v: sort.map((_, i) => last[`_k${i}`]!),
            id: last.id,
            t: total,
          } satisfies CursorPosition<S>)
        : null;
    const data = pageRows.map(page.map);
    if (keyset) return { data, pagination: { limit, has_more: hasMore, next_cursor: nextCursor, total_estimate: total } };
    return { data, pagination: { total, limit, offset, has_more: hasMore, next_cursor: nextCursor } };
  }

  private async cachedTotal(organizationId: string, binding: string, ttlMs: number, compute: () => Promise<number>): Promise<number> {
    let byQuery = this.totals.get(organizationId);
    const hit = byQuery?.get(binding);
    if (hit && Date.now() - hit.at < ttlMs) return hit.total;
    // Single flight: concurrent requests for the same total share one count.
    const total = compute();
    total.catch(() => byQuery?.delete(binding));
    if (!byQuery) {
      if (this.totals.size > 10_000) this.totals.clear();
      byQuery = new Map();
      this.totals.set(organizationId, byQuery);
    }
    if (byQuery.size > 100) byQuery.clear();
    byQuery.set(binding, { total, at: Date.now() });
    return total;
  }

  /** Runs a change to the organization's users; its cached totals are dropped before and after. */
  private async write<T>(organizationId: string, work: (manager: EntityManager) => Promise<T>): Promise<T> {
    return this.writeStatement(organizationId, () => this.transactions.run(work));
  }

  /** The same for a change that is one statement of its own (it wrote its outbox events itself). */
  private async writeStatement<T>(organizationId: string, work: () => Promise<T>): Promise<T> {
    this.changed(organizationId);
    try {
      return await work();
    } finally {
      this.changed(organizationId);
    }
  }

  /** Any change to an organization's users drops its cached totals (this instance's). */
  private changed(organizationId: string): void {
    this.totals.delete(organizationId);
  }

  private binding(kind: string, organizationId: string, query: unknown): string {
    return createHash('sha256').update(JSON.stringify([kind, organizationId, query])).digest('base64url');
  }

  /** POST /users/bulk in one transaction (CONTRACT §8). */
  async bulkCreate(organizationId: string, dto: BulkCreateUsersDto): Promise<{ status: number; body: { results: BulkItemResult[]; summary: Record<string, number> } }> {
    const results: BulkItemResult[] = dto.users.map((_, index) => ({ index, success: false }));
    const valid: { index: number; dto: CreateUserDto }[] = [];
    dto.users.forEach((raw, index) => {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        results[index]!.error = { code: 'VALIDATION_ERROR', message: 'Each user must be a JSON object' };
        return;
      }
      const unstorable = findUnstorableText(raw);
      if (unstorable) {
        results[index]!.error = { code: 'VALIDATION_ERROR', message: 'The user contains invalid data', details: [unstorable] };
        return;
      }
      const item = plainToInstance(CreateUserDto, raw);
      const errors = validateSync(item, { whitelist: true, forbidNonWhitelisted: true });
      if (errors.length > 0) {
        const exception = toAppException(errors, 'body');
        results[index]!.error = { code: exception.code, message: exception.message, details: exception.options.details as ErrorDetail[] };
        return;
      }
      valid.push({ index, dto: item });
    });

    // Emails compare as the unique index compares them: lower-cased by PostgreSQL (JavaScript's
    // lower case differs for a few characters, such as the dotted capital I).
    const emailKeys = await this.users.lowerEmails(valid.map((v) => v.dto.email));
    const seen = new Set<string>();
    const candidates: BulkCandidate[] = [];
    for (const [i, v] of valid.entries()) {
      const key = emailKeys[i]!;
      if (seen.has(key)) {
        results[v.index]!.error = { code: 'DUPLICATE_EMAIL', message: 'This email appears earlier in the batch' };
        continue;
      }
      seen.add(key);
      candidates.push({ ...v, emailKey: key });
    }
    const roleRefs = [...new Set(candidates.map((c) => c.dto.role ?? DEFAULT_ROLE_NAME))];
    const knownRoles = await this.roles.findAll(organizationId, roleRefs);
    // Hashed before any lock is taken (argon2id is the slow part of a bulk with passwords).
    const passwordHashes = new Map<number, string>();
    for (const c of candidates) {
      if (c.dto.password && knownRoles.has(c.dto.role ?? DEFAULT_ROLE_NAME)) passwordHashes.set(c.index, await this.passwords.hash(c.dto.password));
    }
    try {
      return await this.withActiveUsersCapacity(organizationId, undefined, (capacity, manager) =>
        this.insertBulk(organizationId, dto, results, candidates, knownRoles, passwordHashes, capacity, manager),
      );
    } catch (error) {
      if (error instanceof BulkRolledBack) return error.response;
      throw error;
    }
  }

  /** The bulk's inserts, once the capacity is known (under the active-users lock when the plan limits them). */
  private async insertBulk(
    organizationId: string,
    dto: BulkCreateUsersDto,
    results: BulkItemResult[],
    candidates: BulkCandidate[],
    knownRoles: Map<string, RoleSummary>,
    passwordHashes: Map<number, string>,
    capacity: number,
    manager: EntityManager | undefined,
  ): Promise<{ status: number; body: { results: BulkItemResult[]; summary: Record<string, number> } }> {
    const failOnError = dto.options?.fail_on_error ?? false;
    // Taken emails are found by the insert itself (ON CONFLICT). Only a monthly-active-users limit
    // needs them beforehand, so that they do not use up the capacity.
    const existing = Number.isFinite(capacity)
      ? await this.users.existingEmails(organizationId, candidates.map((c) => c.emailKey), manager)
      : new Set<string>();
    const createdAt = new Date();
    const toInsert: { index: number; emailKey: string; user: NewUser; role: RoleSummary; welcome: boolean }[] = [];
    for (const c of candidates) {
      const role = knownRoles.get(c.dto.role ?? DEFAULT_ROLE_NAME);
      if (capacity < 1 && role && !existing.has(c.emailKey)) {
        results[c.index]!.error = { code: 'QUOTA_EXCEEDED', message: 'The plan allows no more monthly active users this month' };
        continue;
      }
      if (!role) {
        results[c.index]!.error = { code: 'INVALID_ROLE', message: `Unknown role: ${c.dto.role}` };
      } else if (existing.has(c.emailKey)) {
        results[c.index]!.error = EMAIL_TAKEN;
      } else {
        capacity -= 1;
        toInsert.push({
          index: c.index,
          emailKey: c.emailKey,
          role,
          welcome: (dto.options?.send_welcome_emails ?? false) || (c.dto.send_welcome_email ?? false),
          user: {
            id: newId('user'),
            email: c.dto.email,
            firstName: c.dto.first_name,
            lastName: c.dto.last_name,
            roleId: role.id,
            passwordHash: passwordHashes.get(c.index) ?? null,
            metadata: c.dto.metadata ?? {},
          },
        });
      }
    }

    const anyFailed = () => results.some((r, i) => !r.success && r.error && !toInsert.some((t) => t.index === i));
    if (failOnError && anyFailed()) {
      // Nothing is inserted; still name the items whose email is taken, rather than "rolled back".
      const taken = Number.isFinite(capacity) ? existing : await this.users.existingEmails(organizationId, toInsert.map((t) => t.emailKey), manager);
      for (const t of toInsert) {
        if (taken.has(t.emailKey)) results[t.index]!.error = EMAIL_TAKEN;
      }
      return this.bulkRolledBack(results, toInsert.map((t) => t.index));
    }

    // What each new user looks like: the response items and user.created events come from this, so
    // nothing is read back.
    const records = toInsert.map(({ user, role }) => newUserRecord(organizationId, user, createdAt, role));
    const events = records.map((r, i) => this.events.draft(organizationId, 'user.created', { user: userSnapshot(r), send_welcome_email: toInsert[i]!.welcome }, createdAt));
    const users = toInsert.map((t) => t.user);
    // All or nothing: a taken email found by the insert rolls the whole batch back.
    const allOrNothing = async (m: EntityManager) => {
      const outcome = await this.users.insertWithEvents(m, organizationId, users, createdAt, events);
      if (outcome.inserted.size < users.length) throw new BulkRollback(outcome);
      return outcome;
    };
    // Not inserted: the email was taken, or the role was deleted since it was looked up.
    const notInserted = (t: (typeof toInsert)[number], outcome: BulkInsertOutcome) =>
      outcome.rolesGone.has(t.role.id) ? { code: 'INVALID_ROLE', message: `Unknown role: ${t.role.name} (deleted meanwhile)` } : EMAIL_TAKEN;
    let outcome: BulkInsertOutcome;
    try {
      if (manager) {
        // Already in the active-users transaction: a BulkRollback rolls it back.
        outcome = await this.writeStatement(organizationId, () => (failOnError ? allOrNothing(manager) : this.users.insertWithEvents(manager, organizationId, users, createdAt, events)));
      } else {
        outcome = failOnError
          ? await this.write(organizationId, allOrNothing)
          : // One statement, atomic by itself: users, activity and events, no BEGIN/COMMIT.
            await this.writeStatement(organizationId, () => this.users.insertWithEvents(undefined, organizationId, users, createdAt, events));
      }
    } catch (error) {
      if (!(error instanceof BulkRollback)) throw error;
      for (const t of toInsert) {
        if (!error.outcome.inserted.has(t.user.id)) results[t.index]!.error = notInserted(t, error.outcome);
      }
      if (manager) throw new BulkRolledBack(this.bulkRolledBack(results, toInsert.map((t) => t.index)));
      return this.bulkRolledBack(results, toInsert.map((t) => t.index));
    }
    if (!failOnError && outcome.inserted.size > 0) this.transactions.committed();
    toInsert.forEach((t, i) => {
      if (!outcome.inserted.has(t.user.id)) {
        results[t.index]!.error = notInserted(t, outcome);
        return;
      }
      const r = records[i]!;
      results[t.index] = { index: t.index, success: true, user: { id: r.id, email: r.email, first_name: r.first_name, last_name: r.last_name, role: r.role_name, status: r.status } };
    });
    return { status: 200, body: { results, summary: this.summary(results) } };
  }

  private bulkRolledBack(results: BulkItemResult[], validIndexes: number[]) {
    for (const i of validIndexes) {
      if (!results[i]!.error) results[i] = { index: i, success: false, error: { code: 'ROLLED_BACK', message: 'Not created: another item failed and fail_on_error is true' } };
    }
    return { status: 422, body: { results, summary: this.summary(results) } };
  }

  private summary(results: BulkItemResult[]) {
    const successful = results.filter((r) => r.success).length;
    return { total: results.length, successful, failed: results.length - successful };
  }

  /**
   * PUT (replace) or PATCH (RFC 7396 merge) of a user's preferences. The merge is worked out from
   * the user's row under its lock, so concurrent merges queue and never lose one another.
   */
  async replacePreferences(organizationId: string, id: string, preferences: Record<string, unknown>, merge: boolean, ifMatch?: string): Promise<UserRecord> {
    if (preferences === null || typeof preferences !== 'object' || Array.isArray(preferences)) {
      throw new AppException('MALFORMED_REQUEST', 'Preferences must be a JSON object');
    }
    if (!USER_ID.test(id)) throw new AppException('USER_NOT_FOUND', 'User not found');
    return this.updateLocked(
      organizationId,
      id,
      (current) => {
        const next = merge ? mergePatch(current.preferences, preferences) : preferences;
        if (Buffer.byteLength(JSON.stringify(next)) > 16 * 1024) {
          throw new AppException('VALIDATION_ERROR', 'Preferences must be at most 16 KiB', {
            details: [{ field: 'preferences', issue: 'Too large', code: 'TOO_LARGE' }],
          });
        }
        return { preferences: next } as UpdateOwnProfileDto;
      },
      ifMatch,
    );
  }

  /** 409 unless If-Match (when sent) names `current`'s version; returns that version, or undefined without If-Match. */
  private assertIfMatch(current: UserRecord, ifMatch: string | undefined): number | undefined {
    return assertIfMatch(ifMatch, current, 'user');
  }
}

/**
 * Whether a change of roles took permissions away. The user's access tokens are then revoked at
 * once: their scopes were the old permissions (a refresh or sign-in gives them the new ones).
 */
function losesPermissions(before: UserRecord, after: UserRecord): boolean {
  const now = new Set((after.roles ?? []).flatMap((r) => r.permissions));
  return (before.roles ?? []).some((r) => r.permissions.some((p) => !now.has(p)));
}

/** A bulk item whose email belongs to a user already. */
const EMAIL_TAKEN = { code: 'DUPLICATE_EMAIL', message: 'User with this email already exists' } as const;

/**
 * A user as the insert of `user` makes them (the columns' defaults), without a read-back: what the
 * response and the user.created event are built from. `role` is the primary role when known.
 */
function newUserRecord(organizationId: string, user: NewUser, createdAt: Date, role?: RoleSummary): UserRecord {
  return {
    id: user.id, organization_id: organizationId, email: user.email, first_name: user.firstName, last_name: user.lastName,
    role_id: role?.id ?? user.roleId, role_name: role?.name ?? null, status: 'active', email_verified: false, password_hash: user.passwordHash,
    metadata: user.metadata, preferences: {}, login_count: 0, last_login: null, version: 1, created_at: createdAt, updated_at: createdAt,
    deleted_at: null,
  };
}

/** A fail_on_error batch met a taken email or a role deleted meanwhile: roll back; `outcome` says which users the insert did not skip. */
class BulkRollback extends Error {
  constructor(readonly outcome: BulkInsertOutcome) {
    super('bulk rolled back');
  }
}

/** The 422 answer of a fail_on_error bulk, thrown to roll back the active-users transaction it ran in. */
class BulkRolledBack extends Error {
  constructor(readonly response: { status: number; body: { results: BulkItemResult[]; summary: Record<string, number> } }) {
    super('bulk rolled back');
  }
}

/** RFC 7396 JSON merge patch. Keys like __proto__ are plain data here, never prototypes. */
export function mergePatch(target: unknown, patch: unknown): Record<string, unknown> {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch as Record<string, unknown>;
  const base: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  const result: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  Object.assign(result, base);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return { ...result };
}
