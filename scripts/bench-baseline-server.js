#!/usr/bin/env node
'use strict';

/**
 * The bench's yardstick: the least a get-user-by-id server can do on this machine. Bare Fastify,
 * a pg pool of the API's size, an ES256 JWT checked with jose on every request, and one query for a
 * user with roles and permissions, as a named prepared statement. No framework, no guards, no rate
 * limits, no logging.
 *
 * The query is fixed here (the API's own as of session 3), not taken from the build: the yardstick
 * measures the machine, so work that makes the API's query cheaper must not make the yardstick
 * faster too (it would lower every projection by as much as it gained).
 *
 * The bench runs it against the same database, under the same load, right before the API's get-user
 * scenario, so the API's figures can be read as a share of what this machine allows at that moment
 * (this kind of machine is a shared virtual one whose speed varies from day to day).
 *
 *   DATABASE_URL, PORT, DATABASE_POOL_SIZE (10)
 * Prints one JSON line {"port":…, "token":…, "organization_id":…} when it listens.
 */

const Fastify = require('fastify');
const { Pool } = require('pg');
const jose = require('jose');

// GET /users/{id}'s query as the API ran it on 1 Dec 2026 (session 3): fixed, see above.
const FIND_USER = `SELECT u.*, pr.name AS role_name,
  (SELECT COALESCE(json_agg(json_build_object('id', r.id, 'name', r.name, 'display_name', r.display_name,
            'permissions', r.permissions) ORDER BY (r.id = u.role_id) DESC, r.name), '[]'::json)
     FROM roles r
    WHERE r.organization_id = u.organization_id
      AND (r.id = u.role_id OR r.id IN (SELECT ur.role_id FROM user_roles ur WHERE ur.user_id = u.id))) AS roles
   FROM users u LEFT JOIN roles pr ON pr.id = u.role_id
  WHERE u.organization_id = $1 AND u.id = $2`;

async function main() {
  const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.DATABASE_POOL_SIZE ?? 10) });
  const { rows } = await pool.query(`SELECT id FROM organizations WHERE name = 'Default' ORDER BY created_at LIMIT 1`);
  const organizationId = rows[0].id;
  const { privateKey, publicKey } = await jose.generateKeyPair('ES256');
  const token = await new jose.SignJWT({ org_id: organizationId, scope: 'user:read' })
    .setProtectedHeader({ alg: 'ES256', kid: 'baseline' })
    .setIssuer('baseline')
    .setAudience('baseline')
    .setSubject('key_baseline')
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(privateKey);

  const app = Fastify({ logger: false });
  app.get('/v2/users/:id', async (request, reply) => {
    const header = request.headers.authorization ?? '';
    let claims;
    try {
      ({ payload: claims } = await jose.jwtVerify(header.slice(7), publicKey, { issuer: 'baseline', audience: 'baseline' }));
    } catch {
      return reply.code(401).send({ error: { code: 'AUTH_TOKEN_INVALID' } });
    }
    const result = await pool.query({ name: 'find_user', text: FIND_USER, values: [claims.org_id, request.params.id] });
    const user = result.rows[0];
    if (!user) return reply.code(404).send({ error: { code: 'USER_NOT_FOUND' } });
    const permissions = [...new Set(user.roles.flatMap((r) => r.permissions))].sort();
    return {
      id: user.id,
      email: user.email,
      first_name: user.first_name,
      last_name: user.last_name,
      role: user.role_name,
      roles: user.roles.map((r) => r.name),
      permissions,
      status: user.status,
      email_verified: user.email_verified,
      metadata: user.metadata,
      created_at: user.created_at,
      updated_at: user.updated_at,
      last_login: user.last_login,
      login_count: user.login_count,
    };
  });
  const port = Number(process.env.PORT ?? 0);
  await app.listen({ port, host: '127.0.0.1' });
  process.stdout.write(`${JSON.stringify({ port: app.server.address().port, token, organization_id: organizationId })}\n`);
  const stop = () => void app.close().then(() => pool.end()).then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
