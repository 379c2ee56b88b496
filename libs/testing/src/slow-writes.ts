import { TestApp } from './test-app';

/**
 * Makes the test database's writes of users slow on cue, so that requests queue behind them: a
 * `first_name` starting with "Slow" takes 0.7 s to write, "Explode" 3 s (beyond a short statement
 * timeout). `on`: the inserts or the updates of the users table.
 */
export async function slowUserWrites(t: TestApp, on: 'INSERT' | 'UPDATE'): Promise<void> {
  const name = `test_slow_user_${on.toLowerCase()}s`;
  await t.sql(`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.first_name LIKE 'Slow%' THEN PERFORM pg_sleep(0.7); END IF;
      IF NEW.first_name = 'Explode' THEN PERFORM pg_sleep(3); END IF;
      RETURN NEW;
    END $$`);
  await t.sql(`CREATE TRIGGER ${name} BEFORE ${on} ON users FOR EACH ROW EXECUTE FUNCTION ${name}()`);
}
