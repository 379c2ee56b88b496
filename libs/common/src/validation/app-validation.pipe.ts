import { ArgumentMetadata, Injectable, ValidationError, ValidationPipe } from '@nestjs/common';
import { plainToInstance } from 'class-transformer';
import { AppException } from '../errors/app.exception';
import { ErrorDetail } from '../errors/error-codes';

class ValidationFailure extends Error {
  constructor(readonly errors: ValidationError[]) {
    super('validation failed');
  }
}

/** Constraint names from class-validator mapped to the machine codes in error.details. */
const CONSTRAINT_CODES: Record<string, string> = {
  isEmail: 'INVALID_EMAIL_FORMAT',
  isDefined: 'REQUIRED',
  isNotEmpty: 'REQUIRED',
  whitelistValidation: 'UNKNOWN_FIELD',
  maxLength: 'TOO_LONG',
  minLength: 'TOO_SHORT',
  length: 'INVALID_LENGTH',
  isIn: 'INVALID_VALUE',
  isEnum: 'INVALID_VALUE',
  isString: 'INVALID_TYPE',
  isBoolean: 'INVALID_TYPE',
  isInt: 'INVALID_TYPE',
  isObject: 'INVALID_TYPE',
  isArray: 'INVALID_TYPE',
  min: 'TOO_SMALL',
  max: 'TOO_LARGE',
  arrayMinSize: 'TOO_FEW_ITEMS',
  arrayMaxSize: 'TOO_MANY_ITEMS',
  matches: 'INVALID_FORMAT',
};

/** Fields whose values are never echoed back in error.details. */
const SECRET_FIELDS = /(password|secret|api_key|token|key)$/i;

/**
 * Validates bodies and queries with class-validator and turns failures into the contract's errors:
 * missing fields are 400 MISSING_REQUIRED_FIELD, broken rules and unknown body fields 422
 * VALIDATION_ERROR, bad query parameters 400 VALIDATION_ERROR.
 */
@Injectable()
export class AppValidationPipe extends ValidationPipe {
  /** Query classes for which an empty query string is known to be valid (most requests send none). */
  private readonly emptyQueryValid = new WeakSet<object>();

  constructor() {
    super({
      whitelist: true,
      forbidNonWhitelisted: true,
      transform: true,
      validationError: { target: false, value: true },
      exceptionFactory: (errors) => new ValidationFailure(errors),
    });
  }

  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const validatesClass = metadata.metatype !== undefined && this.toValidate(metadata);
    if (metadata.type === 'body' && validatesClass) {
      // No body at all validates as an empty object; JSON `null` is a body that is not an object (CONTRACT §3).
      if (value === undefined) value = {};
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new AppException('MALFORMED_REQUEST', 'The request body must be a JSON object');
      }
    }
    if ((metadata.type === 'body' || metadata.type === 'query') && value !== null && typeof value === 'object') {
      const problem = metadata.type === 'body' ? bodyProblem(value, metadata.metatype) : findUnstorableText(value);
      if (problem !== undefined) {
        throw new AppException('VALIDATION_ERROR', 'The request contains invalid data', {
          status: metadata.type === 'query' ? 400 : 422,
          details: [problem],
        });
      }
    }
    // An empty query validates the same way every time: validate it once per class, then only build it.
    const emptyQuery = metadata.type === 'query' && validatesClass && isEmptyObject(value);
    if (emptyQuery && this.emptyQueryValid.has(metadata.metatype!)) return plainToInstance(metadata.metatype!, {});
    try {
      const result = await super.transform(value, metadata);
      if (emptyQuery) this.emptyQueryValid.add(metadata.metatype!);
      return result;
    } catch (error) {
      if (error instanceof ValidationFailure) throw toAppException(error.errors, metadata.type);
      throw error;
    }
  }
}

/**
 * A body class may name one array field whose items stand alone (`static readonly itemsCheckedOneByOne`,
 * POST /users/bulk's `users`): a bad string in one item is that item's error, found by the service,
 * not the request's. Nesting too deep is still the request's (nothing else may walk it).
 */
function bodyProblem(body: object, metatype: ArgumentMetadata['metatype']): ErrorDetail | undefined {
  const itemsField = (metatype as { itemsCheckedOneByOne?: string } | undefined)?.itemsCheckedOneByOne;
  const items = itemsField ? (body as Record<string, unknown>)[itemsField] : undefined;
  if (!itemsField || !Array.isArray(items)) return findUnstorableText(body);
  const rest = findUnstorableText({ ...body, [itemsField]: undefined });
  if (rest) return rest;
  for (let i = 0; i < items.length; i++) {
    const problem = findUnstorableText(items[i]);
    if (problem?.code === 'TOO_DEEP') return { ...problem, field: problem.field === '(body)' ? `${itemsField}.${i}` : `${itemsField}.${i}.${problem.field}` };
  }
  return undefined;
}

function isEmptyObject(value: unknown): boolean {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  for (const _key in value) return false;
  return true;
}

const TYPE_CHECKS = new Set(['isString', 'isBoolean', 'isObject', 'isArray', 'isInt', 'isNumber', 'isDate']);

export function toAppException(errors: ValidationError[], source: ArgumentMetadata['type']): AppException {
  const details: ErrorDetail[] = [];
  let missing = false;
  for (const { error, path } of flatten(errors, '')) {
    const constraints = error.constraints ?? {};
    const names = Object.keys(constraints);
    const isMissing = error.value === undefined && (names.includes('isDefined') || names.includes('isNotEmpty'));
    if (isMissing) {
      missing = true;
      details.push({ field: path, issue: 'This field is required', code: 'REQUIRED' });
      continue;
    }
    // A value of the wrong type is reported as such (not as "too long" by a length rule that also failed).
    const name = names.find((n) => TYPE_CHECKS.has(n)) ?? names.find((n) => n !== 'isDefined') ?? names[0] ?? 'invalid';
    let contextCode = (error.contexts?.[name] as { code?: string } | undefined)?.code;
    if (name === 'isLength') contextCode = /shorter/.test(constraints[name] ?? '') ? 'TOO_LONG' : 'TOO_SHORT';
    const detail: ErrorDetail = {
      field: path,
      issue: name === 'whitelistValidation' ? 'Unknown field' : (constraints[name] ?? 'Invalid value'),
      code: contextCode ?? CONSTRAINT_CODES[name] ?? 'INVALID_VALUE',
    };
    if (!SECRET_FIELDS.test(error.property)) detail.provided = truncate(error.value);
    details.push(detail);
  }
  if (missing && source === 'body') {
    return new AppException('MISSING_REQUIRED_FIELD', 'Required fields are missing', { details });
  }
  return new AppException(
    'VALIDATION_ERROR',
    source === 'body' ? 'The request contains invalid data' : 'Invalid query parameters',
    { details, status: source === 'body' ? 422 : 400 },
  );
}

function* flatten(errors: ValidationError[], prefix: string): Generator<{ error: ValidationError; path: string }> {
  for (const error of errors) {
    const path = prefix ? `${prefix}.${error.property}` : error.property;
    if (error.constraints && Object.keys(error.constraints).length > 0) yield { error, path };
    if (error.children?.length) yield* flatten(error.children, path);
  }
}

function truncate(value: unknown): unknown {
  if (typeof value === 'string' && value.length > 200) return `${value.slice(0, 200)}…`;
  if (value !== null && typeof value === 'object') {
    const json = JSON.stringify(value);
    return json.length > 200 ? `${json.slice(0, 200)}…` : value;
  }
  return value;
}

/** How deep a request's JSON may nest: far beyond any real metadata, well within every parser's stack. */
export const MAX_JSON_DEPTH = 64;
const UNPAIRED_SURROGATE = /\p{Cs}/u;

/**
 * The first thing in a request's JSON that cannot be stored as sent: U+0000 (PostgreSQL text
 * cannot hold it), an unpaired UTF-16 surrogate (not Unicode: it would change on the way to UTF-8
 * or be refused by jsonb), a number out of range (1e999), or nesting deeper than MAX_JSON_DEPTH. Walks without recursion, so a
 * hostile body cannot exhaust the stack here.
 */
export function findUnstorableText(root: unknown): ErrorDetail | undefined {
  const stack: { value: unknown; path: string; depth: number }[] = [{ value: root, path: '', depth: 0 }];
  while (stack.length > 0) {
    const { value, path, depth } = stack.pop()!;
    const problem = typeof value === 'string' ? textProblem(value) : typeof value === 'number' ? numberProblem(value) : undefined;
    if (problem) return { field: path || '(body)', ...problem };
    if (value === null || typeof value !== 'object') continue;
    if (depth >= MAX_JSON_DEPTH) {
      return { field: path || '(body)', issue: `Nested deeper than ${MAX_JSON_DEPTH} levels`, code: 'TOO_DEEP' };
    }
    for (const key of Object.keys(value)) {
      const childPath = path ? `${path}.${key}` : key;
      const keyProblem = textProblem(key);
      if (keyProblem) return { field: childPath, ...keyProblem };
      stack.push({ value: (value as Record<string, unknown>)[key], path: childPath, depth: depth + 1 });
    }
  }
  return undefined;
}

/** JSON.parse reads 1e999 as Infinity, which JSON cannot hold: it would be stored as null. */
function numberProblem(n: number): { issue: string; code: string } | undefined {
  return Number.isFinite(n) ? undefined : { issue: 'Numbers must be finite (this one is out of range)', code: 'NUMBER_OUT_OF_RANGE' };
}

function textProblem(text: string): { issue: string; code: string } | undefined {
  if (text.includes('\u0000')) return { issue: 'Strings must not contain U+0000', code: 'INVALID_CHARACTER' };
  if (UNPAIRED_SURROGATE.test(text)) return { issue: 'Strings must be valid Unicode (an unpaired surrogate was sent)', code: 'INVALID_CHARACTER' };
  return undefined;
}
