import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { ApiResponseSchemaHost, DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
type SchemaObject = ApiResponseSchemaHost['schema'];
import { AppConfig } from '@app/config';

const DESCRIPTION = `
Self-hostable User Management API. All resource paths are under \`/v2\`.

* **Errors** always use the envelope \`{"error": {"code", "message", "details"?, "request_id", "timestamp"}}\`.
  Missing body fields: 400 \`MISSING_REQUIRED_FIELD\`; invalid or unknown body fields: 422 \`VALIDATION_ERROR\`;
  bad query parameters: 400 \`VALIDATION_ERROR\`; malformed JSON: 400 \`MALFORMED_REQUEST\`;
  non-JSON bodies: 415 \`UNSUPPORTED_MEDIA_TYPE\`; bodies over 1 MiB: 413 \`PAYLOAD_TOO_LARGE\`;
  unknown routes: 404 \`NOT_FOUND\`; a known path with another method: 405 \`METHOD_NOT_ALLOWED\` with \`Allow\`.
* **Request ids**: every response carries \`X-Request-Id\` (a client's own 1–128 chars of \`[A-Za-z0-9._-]\` is echoed).
* **Strings** are stored byte-exact; U+0000 is refused with 422.
* \`/v1/*\` answers 410 \`API_VERSION_SUNSET\`.
* **ETags**: single-resource responses (users, \`/users/me\`, preferences, roles, webhooks, organizations) carry
  \`ETag: "<id>.v<version>"\`; a \`PUT\`/\`PATCH\`/\`DELETE\` whose \`If-Match\` is not the current ETag is 409
  \`CONCURRENT_UPDATE\` and changes nothing (\`If-Match: *\` or none: unconditional).
* **Idempotency-Key** (1–255 printable characters) on any authenticated \`POST\`: done at most once per organization and key
  for 24 hours. A retry with the same method, path and body gets the first response again with \`Idempotent-Replayed: true\`
  (status and body; secrets that a response shows once, such as a new API key's \`key\` or a webhook's \`secret\`, are never
  stored and are left out of a replay); the same key with another request is 422 \`IDEMPOTENCY_KEY_REUSED\`; a retry
  while the first is running is 409 \`CONCURRENT_UPDATE\` (after two minutes unfinished, it is taken as abandoned); a request that failed is not remembered and may be retried.
  The \`/auth\` endpoints ignore the header.
`;

/** The envelope every error uses (seed §5, CONTRACT §3). */
const ERROR_SCHEMA: SchemaObject = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message', 'request_id', 'timestamp'],
      properties: {
        code: { type: 'string', example: 'VALIDATION_ERROR' },
        message: { type: 'string' },
        details: {
          description: 'For validation errors: one entry per problem',
          oneOf: [
            {
              type: 'array',
              items: {
                type: 'object',
                properties: { field: { type: 'string' }, issue: { type: 'string' }, provided: {}, code: { type: 'string', example: 'INVALID_EMAIL_FORMAT' } },
              },
            },
            { type: 'object' },
          ],
        },
        retry_after: { type: 'integer', description: 'Seconds (429 only)' },
        request_id: { type: 'string', example: 'req_abc123def456' },
        timestamp: { type: 'string', format: 'date-time' },
      },
    },
  },
};

/** OpenAPI 3.1 generated from the code, served at /openapi.json and /openapi/v2.1.yaml, rendered at /docs. */
export function setupOpenApi(app: NestFastifyApplication, config: AppConfig): void {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setOpenAPIVersion('3.1.0')
      .setTitle('User Management API')
      .setDescription(DESCRIPTION)
      .setVersion('2.1.0')
      .addServer(config.publicBaseUrl)
      .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
      .addGlobalResponse(
        { status: 400, description: 'MALFORMED_REQUEST, MISSING_REQUIRED_FIELD, VALIDATION_ERROR (query), INVALID_FILTER, INVALID_CURSOR', schema: ERROR_SCHEMA },
        { status: 401, description: 'AUTH_TOKEN_MISSING, AUTH_TOKEN_INVALID, AUTH_TOKEN_EXPIRED, AUTH_INVALID_CREDENTIALS', schema: ERROR_SCHEMA },
        { status: 403, description: 'AUTH_INSUFFICIENT_SCOPE, PLAN_FEATURE_UNAVAILABLE, QUOTA_EXCEEDED', schema: ERROR_SCHEMA },
        { status: 404, description: 'The resource does not exist in your organization (USER_NOT_FOUND, ROLE_NOT_FOUND, …)', schema: ERROR_SCHEMA },
        { status: 422, description: 'VALIDATION_ERROR (body), INVALID_ROLE, IDEMPOTENCY_KEY_REUSED, INVALID_WEBHOOK_URL', schema: ERROR_SCHEMA },
        { status: 429, description: 'RATE_LIMIT_EXCEEDED or ACCOUNT_LOCKED, with Retry-After and error.retry_after', schema: ERROR_SCHEMA },
        { status: 500, description: 'INTERNAL_ERROR (no internals; quote request_id)', schema: ERROR_SCHEMA },
        { status: 503, description: 'SERVICE_UNAVAILABLE: the database did not finish in DATABASE_STATEMENT_TIMEOUT_MS, or aborted the request to break a deadlock with a concurrent one (then with Retry-After: 1); either way it changed nothing, and a retry may succeed', schema: ERROR_SCHEMA },
      )
      .build(),
  );
  SwaggerModule.setup('docs', app, document, {
    jsonDocumentUrl: 'openapi.json',
    yamlDocumentUrl: 'openapi/v2.1.yaml',
    customSiteTitle: 'User Management API v2.1',
  });
}

