import { AppException, ErrorDetail, findUnstorableText } from '@app/common';
import { mayCutWord } from './search-trigrams';

/**
 * Turns list and search parameters into parameterised SQL over `users u`. Field names, operators
 * and sort keys come from whitelists; every user value travels as a bind parameter, never as SQL text.
 */

export type SortDirection = 'asc' | 'desc';
export interface SortKey {
  field: SortField;
  direction: SortDirection;
}

/**
 * Sortable fields and the SQL that orders by them. The sign-in fields come from the users' rows in
 * user_login_sort_keys (`k`, joined by LOGIN_SORT_KEYS_JOIN), whose indexes serve their order
 * (migration UserLoginSortKeys); a user who never signed in has the oldest last_login (-infinity).
 */
const SORT_SQL = {
  created_at: { sql: 'u.created_at', cast: 'timestamptz' },
  updated_at: { sql: 'u.updated_at', cast: 'timestamptz' },
  last_login: { sql: 'k.last_login', cast: 'timestamptz' },
  email: { sql: 'u.email_lower', cast: 'text' },
  first_name: { sql: 'u.first_name', cast: 'text' },
  last_name: { sql: 'u.last_name', cast: 'text' },
  login_count: { sql: 'k.login_count', cast: 'int' },
} as const;
const SIGN_IN_SORT_FIELDS = new Set<string>(['last_login', 'login_count']);
/** Joins a user's sign-in sort keys (`k`), on the organization too, so that its index applies. */
const LOGIN_SORT_KEYS_JOIN = 'JOIN user_login_sort_keys k ON k.user_id = u.id AND k.organization_id = u.organization_id';
export type SortField = keyof typeof SORT_SQL;
export const SORT_FIELDS = Object.keys(SORT_SQL) as SortField[];

export const PROJECTABLE_FIELDS = [
  'id', 'email', 'first_name', 'last_name', 'role', 'roles', 'status', 'email_verified',
  'created_at', 'updated_at', 'last_login', 'login_count', 'metadata',
] as const;

const OPERATORS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'contains'] as const;
type Operator = (typeof OPERATORS)[number];
type FieldType = 'string' | 'email' | 'role' | 'status' | 'boolean' | 'date' | 'integer' | 'metadata';
const FILTER_FIELDS: Record<string, FieldType> = {
  id: 'string',
  email: 'email',
  first_name: 'string',
  last_name: 'string',
  role: 'role',
  status: 'status',
  email_verified: 'boolean',
  created_at: 'date',
  updated_at: 'date',
  last_login: 'date',
  login_count: 'integer',
};
const STATUSES = ['active', 'suspended', 'inactive', 'deleted'];
const DATE = /^\d{4}-\d{2}-\d{2}$/;
/** RFC 3339 date-time: seconds required, a fraction of up to six digits (PostgreSQL keeps microseconds). */
const DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/;
const METADATA_KEY = /^[A-Za-z0-9_-]{1,64}$/;

/** Collects bind parameters: `p(value)` returns `$n`. */
export class SqlParams {
  readonly values: unknown[] = [];
  /**
   * Whether the statement holds a predicate whose selectivity depends on its values (a text
   * search, a filter): such a statement is planned for its values on every call. A plan cached for
   * all values (PostgreSQL's generic plan, chosen after five calls of a named statement) reads the
   * sort index and filters: right for `q=james` (one user in 40 matches, 25 are found at once),
   * a scan of the whole organization for `q=<one user's email>` (seconds at a million users).
   */
  planPerCall = false;

  p(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  /** A copy holding the parameters collected so far, for a second statement over the same conditions. */
  copy(): SqlParams {
    const copy = new SqlParams();
    copy.values.push(...this.values);
    copy.planPerCall = this.planPerCall;
    return copy;
  }

  /** Marks the statement as planned for its values on every call (see planPerCall). */
  valueDependent(): this {
    this.planPerCall = true;
    return this;
  }
}

/** Fields whose text is part of SEARCH_EXPRESSION, so that `contains` on them can use the trigram index. */
const TRIGRAM_INDEXED = new Set(['first_name', 'last_name', 'email']);

/** The one expression the trigram index covers; search must use exactly this text. */
export const SEARCH_EXPRESSION = "lower(u.first_name || ' ' || u.last_name || ' ' || u.email)";

export function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * `q` and `search`: every word must appear in the names or email (case-insensitive). Words are
 * lower-cased by PostgreSQL, as the indexed text is (JavaScript's lower case differs for a few
 * characters, such as the dotted capital I).
 */
export function textSearchConditions(text: string | undefined, params: SqlParams, indexedPart: IndexedPart = wholeWord): string[] {
  if (!text) return [];
  const conditions = searchWords(text).map((word) => containsCondition(SEARCH_EXPRESSION, word, indexedPart(word), params));
  if (conditions.length > 0) params.valueDependent();
  return conditions;
}

/** The words of `q` or `search`: separated by any whitespace. */
export function searchWords(text: string): string[] {
  return text.split(/\s+/).filter(Boolean);
}

/** Which part of a word the trigram index looks up (SearchTrigramStats.indexedPart): a substring of the word. */
export type IndexedPart = (word: string) => string;
const wholeWord: IndexedPart = (word) => word;

/**
 * `text` (lower-cased SEARCH_EXPRESSION) holds `word`, case-insensitively. When the index should look
 * up only `part` of the word (search-trigrams.ts), the index condition names the part and the whole
 * word is checked with strpos, which PostgreSQL cannot take to the index: the same rows, fewer
 * index pages read.
 */
function containsCondition(text: string, word: string, part: string, params: SqlParams): string {
  const like = (w: string) => `${text} LIKE lower(${params.p(`%${escapeLike(w)}%`)})`;
  if (!isPartOf(part, word)) return like(word);
  return `(${like(part)} AND strpos(${text}, lower(${params.p(word)})) > 0)`;
}

/** Whether `part` may stand for `word` in the index condition: a proper substring of a word that may be cut (mayCutWord). */
function isPartOf(part: string, word: string): boolean {
  return part !== word && word.includes(part) && mayCutWord(word);
}

function filterError(field: string, issue: string, provided: unknown): AppException {
  const detail: ErrorDetail = { field: `filters.${field}`, issue, provided, code: 'INVALID_FILTER' };
  return new AppException('INVALID_FILTER', `Invalid filter on "${field}": ${issue}`, { details: [detail] });
}

/** Date.parse rolls 2025-02-30 over to March: a real calendar date must come back unchanged. */
function isCalendarDate(ymd: string): boolean {
  const d = new Date(`${ymd}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === ymd;
}

function isClockTime(value: string): boolean {
  const [, h, m, s] = /T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value) ?? [];
  const offset = /([+-])(\d{2}):(\d{2})$/.exec(value);
  return Number(h) < 24 && Number(m) < 60 && Number(s ?? 0) < 60 && (!offset || (Number(offset[2]) < 24 && Number(offset[3]) < 60));
}

/** Years PostgreSQL and ISO strings agree on (year 0 and 10000+ are refused, not sent to SQL). */
const inYearRange = (d: Date) => d.getUTCFullYear() >= 1 && d.getUTCFullYear() <= 9999;

function parseDate(field: string, value: unknown): { from: string; to?: string } {
  if (typeof value === 'string' && DATE.test(value) && isCalendarDate(value)) {
    const from = new Date(`${value}T00:00:00Z`);
    const next = new Date(from.getTime() + 86_400_000);
    // The last day there is ends at infinity, not at a year-10000 timestamp nothing can parse.
    if (inYearRange(from)) return { from: from.toISOString(), to: inYearRange(next) ? next.toISOString() : 'infinity' };
  }
  if (typeof value === 'string' && DATETIME.test(value) && isCalendarDate(value.slice(0, 10)) && isClockTime(value) && !Number.isNaN(Date.parse(value))) {
    // Timestamps are shown in whole seconds, and compare as shown: the second a user's created_at
    // shows is `eq` to it, `gt` it means a later second. So the bounds are that second and the next
    // (a fractional value lies between two shown seconds: `eq` matches nothing, `gte` starts at the next).
    const at = new Date(value);
    const second = new Date(Math.floor(at.getTime() / 1000) * 1000);
    const next = new Date(second.getTime() + 1000);
    const whole = !/\.\d*[1-9]/.test(value);
    const iso = (d: Date) => (inYearRange(d) ? d.toISOString() : 'infinity');
    if (inYearRange(second)) return { from: whole ? second.toISOString() : iso(next), to: iso(next) };
  }
  throw filterError(field, 'Expected a date (YYYY-MM-DD) or an RFC 3339 timestamp, years 0001 to 9999', value);
}

/**
 * Parses the `filters` JSON of GET /users/search into SQL conditions; says exactly which part is
 * wrong. When `sort` joins the sign-in keys (sortJoin), filters on the sign-in fields read them
 * too, so that their index serves the filter as a range: `last_login lt X` sorted by last_login
 * starts at X instead of walking every later sign-in.
 */
export function parseFilters(
  raw: string | undefined,
  organizationId: string,
  params: SqlParams,
  indexedPart: IndexedPart = wholeWord,
  sort: SortKey[] = [],
): { conditions: string[]; includesDeleted: boolean; readsSignInKeys: boolean } {
  if (raw === undefined || raw === '') return { conditions: [], includesDeleted: false, readsSignInKeys: false };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new AppException('INVALID_FILTER', 'filters must be a JSON object', {
      details: [{ field: 'filters', issue: 'Not valid JSON', provided: raw.slice(0, 200), code: 'INVALID_FILTER' }],
    });
  }
  // U+0000, unpaired surrogates and deep nesting only show once the JSON is parsed.
  const unstorable = findUnstorableText(parsed);
  if (unstorable) throw filterError(unstorable.field, unstorable.issue, undefined);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new AppException('INVALID_FILTER', 'filters must be a JSON object', {
      details: [{ field: 'filters', issue: 'Expected an object', provided: parsed, code: 'INVALID_FILTER' }],
    });
  }
  const conditions: string[] = [];
  // Soft-deleted users stay hidden unless a status filter asks for `deleted` by name (eq or in).
  let includesDeleted = false;
  const signInKeysJoined = sortJoin(sort) !== '';
  let readsSignInKeys = false;
  for (const [field, spec] of Object.entries(parsed as Record<string, unknown>)) {
    let type: FieldType | undefined = Object.hasOwn(FILTER_FIELDS, field) ? FILTER_FIELDS[field] : undefined;
    let metadataKey: string | undefined;
    if (field.startsWith('metadata.')) {
      metadataKey = field.slice('metadata.'.length);
      if (!METADATA_KEY.test(metadataKey)) throw filterError(field, 'metadata keys are 1-64 of [A-Za-z0-9_-]', field);
      type = 'metadata';
    }
    if (!type) throw filterError(field, `Unknown field; use one of ${Object.keys(FILTER_FIELDS).join(', ')} or metadata.<key>`, field);
    const operations: [string, unknown][] =
      spec !== null && typeof spec === 'object' && !Array.isArray(spec) ? Object.entries(spec) : [['eq', spec]];
    if (operations.length === 0) throw filterError(field, 'Empty operator object', spec);
    for (const [op, value] of operations) {
      if (!(OPERATORS as readonly string[]).includes(op)) {
        throw filterError(field, `Unknown operator "${op}"; use ${OPERATORS.join(', ')}`, op);
      }
      conditions.push(compile(field, type, metadataKey, op as Operator, value, organizationId, params, indexedPart, signInKeysJoined));
      if (signInKeysJoined && SIGN_IN_SORT_FIELDS.has(field)) readsSignInKeys = true;
      if (field === 'status' && (op === 'eq' || op === 'in') && [value].flat().includes('deleted')) includesDeleted = true;
    }
  }
  if (conditions.length > 0) params.valueDependent();
  return { conditions, includesDeleted, readsSignInKeys };
}

const COMPARE: Record<Exclude<Operator, 'in' | 'contains'>, string> = { eq: '=', ne: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=' };

function compile(
  field: string,
  type: FieldType,
  metadataKey: string | undefined,
  op: Operator,
  value: unknown,
  org: string,
  params: SqlParams,
  indexedPart: IndexedPart,
  signInKeysJoined: boolean,
): string {
  const list = (check: (v: unknown) => boolean, what: string): unknown[] => {
    if (!Array.isArray(value) || value.length === 0 || value.length > 100 || !value.every(check)) {
      throw filterError(field, `"in" takes a non-empty array (at most 100) of ${what}`, value);
    }
    return value;
  };
  const isString = (v: unknown) => typeof v === 'string';
  switch (type) {
    case 'string':
    case 'email': {
      const column = type === 'email' ? 'u.email_lower' : field === 'id' ? 'u.id' : `u.${field}`;
      // Emails compare as the unique index does: trimmed, then lower-cased by PostgreSQL.
      const norm = (v: unknown) => (type === 'email' ? String(v).trim() : String(v));
      const bind = (v: unknown) => (type === 'email' ? `lower(${params.p(norm(v))})` : params.p(norm(v)));
      if (op === 'in') {
        const values = params.p(list(isString, 'strings').map(norm));
        return type === 'email' ? `${column} = ANY(ARRAY(SELECT lower(v) FROM unnest(${values}::text[]) AS v))` : `${column} = ANY(${values}::text[])`;
      }
      if (typeof value !== 'string') throw filterError(field, 'Expected a string', value);
      if (op === 'contains') {
        const pattern = params.p(`%${escapeLike(value)}%`);
        // The names and the email are in the trigram index's text: the second condition follows
        // from the first (ILIKE compares lower() of both sides, character by character) and lets
        // PostgreSQL find the rows through the index instead of reading the whole organization.
        if (TRIGRAM_INDEXED.has(field)) {
          const part = indexedPart(value);
          const lookup = isPartOf(part, value) ? params.p(`%${escapeLike(part)}%`) : pattern;
          return `(u.${field} ILIKE ${pattern} AND ${SEARCH_EXPRESSION} LIKE lower(${lookup}))`;
        }
        return `${column} ILIKE ${pattern}`;
      }
      return `${column} ${COMPARE[op]} ${bind(value)}`;
    }
    case 'role': {
      const names = op === 'in' ? list(isString, 'role names') : [value];
      if (!names.every(isString)) throw filterError(field, 'Expected a role name', value);
      const roleIds = (cond: string) => `SELECT r.id FROM roles r WHERE r.organization_id = ${params.p(org)} AND ${cond}`;
      if (op === 'contains') return `u.role_id IN (${roleIds(`r.name ILIKE ${params.p(`%${escapeLike(String(value))}%`)}`)})`;
      if (op === 'eq' || op === 'in') return `u.role_id IN (${roleIds(`r.name = ANY(${params.p(names)}::text[])`)})`;
      if (op === 'ne') return `(u.role_id IS NULL OR u.role_id NOT IN (${roleIds(`r.name = ${params.p(value)}`)}))`;
      throw filterError(field, `Operator "${op}" does not apply to roles`, op);
    }
    case 'status': {
      const values = op === 'in' ? list(isString, 'statuses') : [value];
      const bad = values.find((v) => !STATUSES.includes(String(v)) || typeof v !== 'string');
      if (bad !== undefined) throw filterError(field, `Expected one of ${STATUSES.join(', ')}`, bad);
      // Soft-deleted users, and only they, have status 'deleted' and a deleted_at: asked alone, they
      // are found through their partial index (migration UsersSoftDeletedIndex).
      if ((op === 'eq' || op === 'in') && values.every((v) => v === 'deleted')) return 'u.deleted_at IS NOT NULL';
      if (op === 'eq' || op === 'in') return `u.status = ANY(${params.p(values)}::text[])`;
      if (op === 'ne') return `u.status <> ${params.p(value)}`;
      throw filterError(field, `Operator "${op}" does not apply to status`, op);
    }
    case 'boolean': {
      if (typeof value !== 'boolean') throw filterError(field, 'Expected true or false', value);
      if (op === 'eq') return `u.${field} = ${params.p(value)}`;
      if (op === 'ne') return `u.${field} <> ${params.p(value)}`;
      throw filterError(field, `Operator "${op}" does not apply to booleans`, op);
    }
    case 'integer': {
      const isInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && Math.abs(v) < 2 ** 31;
      // login_count is the only integer field; the sign-in keys hold the same value.
      const column = signInKeysJoined ? SORT_SQL.login_count.sql : `u.${field}`;
      if (op === 'in') return `${column} = ANY(${params.p(list(isInt, 'integers'))}::int[])`;
      if (op === 'contains' || !isInt(value)) throw filterError(field, op === 'contains' ? '"contains" applies to strings' : 'Expected an integer', value);
      return `${column} ${COMPARE[op as keyof typeof COMPARE]} ${params.p(value)}`;
    }
    case 'date': {
      // A user who never signed in has the oldest last_login, as in the sort: lt, lte and ne include
      // them. The sign-in keys hold exactly that value (-infinity for never).
      const lastLogin = signInKeysJoined ? SORT_SQL.last_login.sql : "COALESCE(u.last_login, '-infinity'::timestamptz)";
      const column = field === 'last_login' ? lastLogin : `u.${field}`;
      if (op === 'contains') throw filterError(field, '"contains" applies to strings', op);
      if (op === 'in') {
        const days = list(isString, 'dates').map((v) => parseDate(field, v));
        return `(${days.map((d) => dayCondition(column, d, params)).join(' OR ')})`;
      }
      const d = parseDate(field, value);
      if (op === 'eq') return dayCondition(column, d, params);
      if (op === 'ne') return `NOT (${dayCondition(column, d, params)})`;
      // A bare date compares with its whole day: gt 2024-01-01 means after that day.
      const bound = op === 'gt' || op === 'lte' ? (d.to ?? d.from) : d.from;
      const sqlOp = op === 'gt' ? (d.to ? '>=' : '>') : op === 'lte' ? (d.to ? '<' : '<=') : COMPARE[op];
      return `${column} ${sqlOp} ${params.p(bound)}::timestamptz`;
    }
    case 'metadata': {
      // Values compare with their JSON type: 10 matches the number 10, not the string "10"; true
      // matches the boolean, not the string "true". `ne` (like `ne` on a string) also matches users
      // without the key or with a value of another type.
      const key = params.p(metadataKey);
      const scalar = (v: unknown) => typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
      const json = (v: unknown) => params.p(JSON.stringify(v));
      if (op === 'in') return `u.metadata->${key} IN (SELECT jsonb_array_elements(${json(list(scalar, 'strings, numbers or booleans'))}::jsonb))`;
      if (!scalar(value)) throw filterError(field, 'Expected a string, number or boolean', value);
      if (op === 'contains') {
        if (typeof value !== 'string') throw filterError(field, '"contains" takes a string', value);
        return `u.metadata->>${key} ILIKE ${params.p(`%${escapeLike(value)}%`)}`;
      }
      if (op === 'eq') return `u.metadata->${key} = ${json(value)}::jsonb`;
      if (op === 'ne') return `(u.metadata->${key} IS NULL OR u.metadata->${key} <> ${json(value)}::jsonb)`;
      if (typeof value === 'number') {
        const num = `(CASE WHEN jsonb_typeof(u.metadata->${key}) = 'number' THEN (u.metadata->>${key})::numeric END)`;
        return `${num} ${COMPARE[op]} ${params.p(value)}::numeric`;
      }
      if (typeof value === 'boolean') throw filterError(field, `"${op}" takes a number or a string`, value);
      const text = `(CASE WHEN jsonb_typeof(u.metadata->${key}) = 'string' THEN u.metadata->>${key} END)`;
      return `${text} ${COMPARE[op]} ${params.p(value)}`;
    }
  }
}

function dayCondition(column: string, d: { from: string; to?: string }, params: SqlParams): string {
  if (!d.to) return `${column} = ${params.p(d.from)}::timestamptz`;
  return `(${column} >= ${params.p(d.from)}::timestamptz AND ${column} < ${params.p(d.to)}::timestamptz)`;
}

/** `field:dir` items from a comma list or a JSON array; unknown fields or directions are 400 VALIDATION_ERROR. */
export function parseSort(raw: string | undefined, fallback: SortKey[]): SortKey[] {
  if (raw === undefined || raw === '') return fallback;
  let items: unknown[];
  if (raw.trim().startsWith('[')) {
    try {
      items = JSON.parse(raw) as unknown[];
    } catch {
      throw sortError(raw, 'Not valid JSON');
    }
    if (!Array.isArray(items)) throw sortError(raw, 'Expected an array');
  } else {
    items = raw.split(',').map((s) => s.trim());
  }
  if (items.length === 0 || items.length > 5) throw sortError(raw, 'Give 1 to 5 sort keys');
  const keys = items.map((item) => {
    if (typeof item !== 'string') throw sortError(item, 'Expected "field:asc|desc"');
    const [field, direction = 'asc', extra] = item.split(':');
    if (extra !== undefined || !field || !(SORT_FIELDS as string[]).includes(field) || !['asc', 'desc'].includes(direction)) {
      throw sortError(item, `Use field:asc|desc with field one of ${SORT_FIELDS.join(', ')}`);
    }
    return { field: field as SortField, direction: direction as SortDirection };
  });
  if (new Set(keys.map((k) => k.field)).size !== keys.length) throw sortError(raw, 'A field appears twice');
  return keys;
}

function sortError(provided: unknown, issue: string): AppException {
  return new AppException('VALIDATION_ERROR', 'Invalid sort', {
    status: 400,
    details: [{ field: 'sort', issue, provided, code: 'INVALID_SORT' }],
  });
}

export function parseFields(raw: string | undefined): string[] | undefined {
  if (raw === undefined || raw === '') return undefined;
  let items: unknown;
  if (raw.trim().startsWith('[')) {
    try {
      items = JSON.parse(raw);
    } catch {
      items = undefined;
    }
  } else {
    items = raw.split(',').map((s) => s.trim());
  }
  const bad = !Array.isArray(items) ? raw : items.find((f) => typeof f !== 'string' || !(PROJECTABLE_FIELDS as readonly string[]).includes(f));
  if (bad !== undefined) {
    throw new AppException('VALIDATION_ERROR', 'Invalid fields', {
      status: 400,
      details: [{ field: 'fields', issue: `Use fields from ${PROJECTABLE_FIELDS.join(', ')}`, provided: bad, code: 'INVALID_FIELD' }],
    });
  }
  return [...new Set(['id', ...(items as string[])])];
}

/** The join a sort needs beside `users u` (LOGIN_SORT_KEYS_JOIN for the sign-in fields), or ''. */
export function sortJoin(sort: SortKey[]): string {
  return sort.some((k) => SIGN_IN_SORT_FIELDS.has(k.field)) ? LOGIN_SORT_KEYS_JOIN : '';
}

/**
 * The id that breaks ties: the joined sort keys' copy when there is one, so that an index of
 * user_login_sort_keys, which ends with user_id, serves the whole ORDER BY and the cursor's row comparison.
 */
function tieBreaker(sort: SortKey[]): string {
  return sortJoin(sort) ? 'k.user_id' : 'u.id';
}

/** ORDER BY for the sort keys plus the id tie-breaker (in the direction of the last key). */
export function orderBy(sort: SortKey[]): string {
  const last = sort[sort.length - 1]!.direction;
  return [...sort.map((k) => `${SORT_SQL[k.field].sql} ${k.direction.toUpperCase()}`), `${tieBreaker(sort)} ${last.toUpperCase()}`].join(', ');
}

/** The sort values of a row, as text, for the next cursor (keeps PostgreSQL's microseconds). */
export function sortValueColumns(sort: SortKey[]): string {
  return sort.map((k, i) => `(${SORT_SQL[k.field].sql})::text AS _k${i}`).join(', ');
}

/** Rows strictly after the cursor position, for any mix of directions. */
export function keysetCondition(sort: SortKey[], values: string[], lastId: string, params: SqlParams): string {
  const last = sort[sort.length - 1]!.direction;
  const keys = [...sort.map((k, i) => ({ sql: SORT_SQL[k.field].sql, cast: SORT_SQL[k.field].cast, dir: k.direction, value: values[i] })), { sql: tieBreaker(sort), cast: 'text', dir: last, value: lastId }];
  if (keys.some((k) => typeof k.value !== 'string')) throw new AppException('INVALID_CURSOR', 'The cursor is not valid for this query');
  if (keys.every((k) => k.dir === keys[0]!.dir)) {
    const op = keys[0]!.dir === 'asc' ? '>' : '<';
    return `(${keys.map((k) => k.sql).join(', ')}) ${op} (${keys.map((k) => `${params.p(k.value)}::${k.cast}`).join(', ')})`;
  }
  const branches = keys.map((key, i) => {
    const equal = keys.slice(0, i).map((k) => `${k.sql} = ${params.p(k.value)}::${k.cast}`);
    return `(${[...equal, `${key.sql} ${key.dir === 'asc' ? '>' : '<'} ${params.p(key.value)}::${key.cast}`].join(' AND ')})`;
  });
  return `(${branches.join(' OR ')})`;
}
