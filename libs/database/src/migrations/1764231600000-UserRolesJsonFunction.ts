import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every role of a user (primary first, then by name) with its permissions, as JSON, for users who
 * hold more roles than their primary one. Reads of one user call it only when the user has rows in
 * user_roles; everyone else's roles are built from the primary role the query has already joined.
 * A PL/pgSQL function rather than a sub-query: PostgreSQL would set up the sub-query's aggregate,
 * sort and scans on every read (about 14 % of a get-by-id's instructions), where the function runs,
 * with its plan cached per connection, only when needed.
 */
export class UserRolesJsonFunction1764231600000 implements MigrationInterface {
  name = 'UserRolesJsonFunction1764231600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION users_roles_json(organization text, user_id text, primary_role text) RETURNS json
      LANGUAGE plpgsql STABLE PARALLEL SAFE AS $fn$
      BEGIN
        RETURN (SELECT COALESCE(json_agg(json_build_object('id', r.id, 'name', r.name, 'display_name', r.display_name,
                         'permissions', r.permissions) ORDER BY (r.id = primary_role) DESC, r.name), '[]'::json)
                  FROM roles r
                 WHERE r.organization_id = organization
                   AND (r.id = primary_role OR r.id IN (SELECT ur.role_id FROM user_roles ur WHERE ur.user_id = users_roles_json.user_id)));
      END
      $fn$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION users_roles_json(text, text, text)`);
  }
}
