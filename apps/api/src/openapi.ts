import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
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
`;

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
      .build(),
  );
  SwaggerModule.setup('docs', app, document, {
    jsonDocumentUrl: 'openapi.json',
    yamlDocumentUrl: 'openapi/v2.1.yaml',
    customSiteTitle: 'User Management API v2.1',
  });
}
