import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { createTestApp, TEST_BOOTSTRAP_KEY, TestApp } from '@app/testing';

interface Mail {
  to: string;
  raw: string;
}

/** Undoes quoted-printable soft line breaks so links can be read from the raw message. */
const decode = (raw: string) => raw.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
const linkIn = (mail: Mail) => /https?:\/\/\S+\?token=([A-Za-z0-9_-]+)/.exec(decode(mail.raw));

describe('Transactional email over SMTP (issue: welcome, verification, password reset)', () => {
  let t: TestApp;
  let token: string;
  let orgId: string;
  const mails: Mail[] = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      let raw = '';
      stream.on('data', (c: Buffer) => (raw += c.toString()));
      stream.on('end', () => {
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address).join(','), raw });
        callback();
      });
    },
  });
  const auth = () => ({ Authorization: `Bearer ${token}` });
  const email = () => `m${Math.random().toString(36).slice(2)}@example.com`;
  const waitForMail = async (to: string, subject: RegExp) => {
    for (let i = 0; i < 100; i++) {
      await t.drainEvents();
      const found = mails.find((m) => m.to === to && subject.test(m.raw));
      if (found) return found;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no mail to ${to} matching ${subject}`);
  };

  beforeAll(async () => {
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
    const port = (smtp.server.address() as AddressInfo).port;
    t = await createTestApp({ SMTP_URL: `smtp://127.0.0.1:${port}`, PUBLIC_BASE_URL: 'https://accounts.example.com' });
    const res = await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY }).expect(200);
    token = res.body.access_token;
    orgId = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).org_id;
  });
  afterAll(async () => {
    await t.close();
    await new Promise<void>((resolve) => smtp.close(() => resolve()));
  });

  it('send_welcome_email on create and send_welcome_emails on bulk send one welcome per created user', async () => {
    const single = email();
    await t.http().post('/v2/users').set(auth()).send({ email: single, first_name: 'Wendy', last_name: 'W', send_welcome_email: true }).expect(201);
    const welcome = await waitForMail(single, /Subject: Welcome, Wendy!/);
    expect(decode(welcome.raw)).toContain('Your account');
    const quiet = email();
    await t.http().post('/v2/users').set(auth()).send({ email: quiet, first_name: 'Q', last_name: 'Q' }).expect(201);
    const bulk = [email(), email()];
    await t.http().post('/v2/users/bulk').set(auth()).send({ users: bulk.map((e) => ({ email: e, first_name: 'Bulk', last_name: 'B' })), options: { send_welcome_emails: true } }).expect(200);
    for (const to of bulk) await waitForMail(to, /Subject: Welcome, Bulk!/);
    await t.drainEvents();
    expect(mails.filter((m) => m.to === quiet)).toHaveLength(0);
  });

  it('a verification link is single use and sets email_verified', async () => {
    const to = email();
    const user = (await t.http().post('/v2/users').set(auth()).send({ email: to, first_name: 'V', last_name: 'E' }).expect(201)).body;
    await t.http().post(`/v2/users/${user.id}/verification-email`).set(auth()).expect(202);
    const mail = await waitForMail(to, /Confirm your email/);
    const link = linkIn(mail)!;
    expect(link[0]).toMatch(/^https:\/\/accounts\.example\.com\/verify-email\?token=/);
    const [stored] = await t.sql<{ token_hash: string }>('SELECT token_hash FROM email_tokens WHERE user_id = $1', [user.id]);
    expect(stored!.token_hash).not.toBe(link[1]);
    expect(JSON.stringify(await t.sql('SELECT data FROM outbox_events'))).not.toContain(link[1]);
    await t.http().post('/v2/auth/verify-email').send({ token: link[1] }).expect(200);
    const read = await t.http().get(`/v2/users/${user.id}`).set(auth()).expect(200);
    expect(read.body.email_verified).toBe(true);
    const again = await t.http().post('/v2/auth/verify-email').send({ token: link[1] }).expect(401);
    expect(again.body.error.code).toBe('AUTH_TOKEN_INVALID');
    await t.http().post('/v2/auth/verify-email').send({ token: 'x'.repeat(43) }).expect(401);
  });

  it('password reset: forgot always answers 202; the link resets once and ends every session; expired links are refused', async () => {
    const to = email();
    const old = 'the old password';
    const user = (await t.http().post('/v2/users').set(auth()).send({ email: to, first_name: 'P', last_name: 'R', password: old }).expect(201)).body;
    const session = (await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: orgId, email: to, password: old }).expect(200)).body;

    const unknown = await t.http().post('/v2/auth/password/forgot').send({ organization_id: orgId, email: 'nobody@example.com' }).expect(202);
    const known = await t.http().post('/v2/auth/password/forgot').send({ organization_id: orgId, email: to }).expect(202);
    expect(known.body).toEqual(unknown.body);
    const mail = await waitForMail(to, /Reset your password/);
    const link = linkIn(mail)!;
    expect(link[0]).toMatch(/\/reset-password\?token=/);
    expect(mails.filter((m) => m.to === 'nobody@example.com')).toHaveLength(0);

    await t.http().post('/v2/auth/password/reset').send({ token: link[1], password: 'the new password' }).expect(200);
    await t.http().post('/v2/auth/password/reset').send({ token: link[1], password: 'another password' }).expect(401);
    await t.http().get('/v2/users/me').set('Authorization', `Bearer ${session.access_token}`).expect(401);
    await t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: session.refresh_token }).expect(401);
    await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: orgId, email: to, password: old }).expect(401);
    await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: orgId, email: to, password: 'the new password' }).expect(200);

    await t.http().post('/v2/auth/password/forgot').send({ organization_id: orgId, email: to }).expect(202);
    await t.drainEvents();
    const second = linkIn(mails.filter((m) => m.to === to && /Reset your password/.test(m.raw)).at(-1)!)!;
    await t.sql(`UPDATE email_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1 AND used_at IS NULL`, [user.id]);
    await t.http().post('/v2/auth/password/reset').send({ token: second[1], password: 'too late password' }).expect(401);
  });

  describe('without SMTP_URL', () => {
    let local: TestApp;
    beforeAll(async () => {
      local = await createTestApp({ SMTP_URL: '' });
    });
    afterAll(async () => {
      await local.close();
    });

    it('writes each message as an .eml file under DATA_DIR/mail', async () => {
      const tok = (await local.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY }).expect(200)).body.access_token;
      await local.http().post('/v2/users').set('Authorization', `Bearer ${tok}`).send({ email: 'file@example.com', first_name: 'File', last_name: 'F', send_welcome_email: true }).expect(201);
      await local.drainEvents();
      const dir = join(local.dataDir, 'mail');
      const files = readdirSync(dir).filter((f) => f.endsWith('.eml'));
      expect(files).toHaveLength(1);
      const content = readFileSync(join(dir, files[0]!), 'utf8');
      expect(content).toMatch(/To: file@example.com/);
      expect(content).toMatch(/Subject: Welcome, File!/);
    });
  });
});
