import { Webhook } from 'standardwebhooks';
import { createTestApp, TEST_BOOTSTRAP_KEY, TestApp, WebhookReceiver } from '@app/testing';
import { WebhookDeliveryWorker } from '../apps/api/src/modules/webhooks/webhook-delivery.worker';

describe('Webhooks (CONTRACT §9, §10; seed §7.2)', () => {
  let t: TestApp;
  let token: string;
  let orgId: string;
  const receiver = new WebhookReceiver();
  const auth = () => ({ Authorization: `Bearer ${token}` });
  const settle = async () => {
    await t.drainEvents();
    await t.app.get(WebhookDeliveryWorker).settle();
  };
  const register = (body: Record<string, unknown>) => t.http().post('/v2/webhooks').set(auth()).send(body);
  const email = () => `w${Math.random().toString(36).slice(2)}@example.com`;

  beforeAll(async () => {
    await receiver.start();
    t = await createTestApp({ OUTBOUND_ALLOWED_HOSTS: '127.0.0.1' });
    const res = await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY }).expect(200);
    token = res.body.access_token;
    orgId = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).org_id;
  });
  afterAll(async () => {
    await t.close();
    await receiver.stop();
  });

  it('registers an endpoint: 201 with a whsec_ secret shown once; lists never show it', async () => {
    const res = await register({ url: receiver.url('/shape'), events: ['user.created'] }).expect(201);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^wh_/),
      url: receiver.url('/shape'),
      events: ['user.created'],
      active: true,
      disabled_reason: null,
      secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]+={0,2}$/),
      created_at: expect.stringMatching(/Z$/),
      updated_at: expect.any(String),
    });
    expect(Buffer.from(res.body.secret.slice(6), 'base64').length).toBeGreaterThanOrEqual(24);
    const list = await t.http().get('/v2/webhooks').set(auth()).expect(200);
    const one = await t.http().get(`/v2/webhooks/${res.body.id}`).set(auth()).expect(200);
    for (const body of [list.body, one.body]) expect(JSON.stringify(body)).not.toContain(res.body.secret);
    const [row] = await t.sql<{ secret_encrypted: string }>('SELECT secret_encrypted FROM webhooks WHERE id = $1', [res.body.id]);
    expect(row!.secret_encrypted).not.toContain(res.body.secret.slice(6, 20));
    await t.http().delete(`/v2/webhooks/${res.body.id}`).set(auth()).expect(204);
  });

  it('null for a field of a create or a change is 422 VALIDATION_ERROR, never a 500, and changes nothing', async () => {
    const id = (await register({ url: receiver.url('/nulls'), events: ['user.created'] }).expect(201)).body.id as string;
    for (const body of [{ events: null }, { url: null }, { active: null }, { secret: null }]) {
      const res = await t.http().put(`/v2/webhooks/${id}`).set(auth()).send(body);
      expect([body, res.status, res.body.error?.code]).toEqual([body, 422, 'VALIDATION_ERROR']);
    }
    const res = await register({ url: receiver.url('/nulls2'), events: ['user.created'], secret: null });
    expect(res.status).toBe(422);
    const [row] = await t.sql<{ events: string[]; active: boolean }>('SELECT events, active FROM webhooks WHERE id = $1', [id]);
    expect(row).toEqual({ events: ['user.created'], active: true });
    await t.http().delete(`/v2/webhooks/${id}`).set(auth()).expect(204);
  });

  it('refuses internal addresses and other schemes with 422 INVALID_WEBHOOK_URL', async () => {
    for (const url of [
      'http://169.254.169.254/latest/meta-data',
      'http://10.0.0.5/hook',
      'http://192.168.1.1/hook',
      'http://172.16.0.1/hook',
      'http://[::1]:8080/hook',
      'http://[::ffff:127.0.0.2]/hook',
      'http://0.0.0.0/hook',
      'http://127.1.2.3/hook',
      // IPv6 forms that carry an internal IPv4 address (NAT64, mapped, translated, compatible, 6to4).
      'http://[64:ff9b::a9fe:a9fe]/latest/meta-data',
      'http://[64:ff9b::169.254.169.254]/',
      'http://[::ffff:7f00:1]/hook',
      'http://[::ffff:0:a00:5]/hook',
      'http://[::a00:5]/hook',
      'http://[2002:a9fe:a9fe::1]/hook',
      'http://[64:ff9b:1::a00:5]/hook',
      'file:///etc/passwd',
      'ftp://example.com/hook',
      'gopher://example.com/',
      'not a url',
      'http://user:pass@example.com/hook',
    ]) {
      const res = await register({ url, events: ['*'] });
      expect([url, res.status, res.body.error?.code]).toEqual([url, 422, 'INVALID_WEBHOOK_URL']);
    }
    const badEvent = await register({ url: receiver.url('/x'), events: ['user.exploded'] }).expect(422);
    expect(badEvent.body.error.code).toBe('VALIDATION_ERROR');
  });

  it('delivers every one of the five events with the seed payload and a signature standardwebhooks verifies', async () => {
    const all = (await register({ url: receiver.url('/all'), events: ['*'] }).expect(201)).body;
    const onlyDeleted = (await register({ url: receiver.url('/deleted-only'), events: ['user.deleted'] }).expect(201)).body;
    const password = 'a long enough password';
    const user = (await t.http().post('/v2/users').set(auth()).send({ email: email(), first_name: 'Web', last_name: 'Hook', password }).expect(201)).body;
    await t.http().put(`/v2/users/${user.id}`).set(auth()).send({ first_name: 'Webby' }).expect(200);
    await t.http().post(`/v2/users/${user.id}/roles`).set(auth()).send({ roles: ['moderator'] }).expect(200);
    await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: orgId, email: user.email, password }).expect(200);
    await t.http().delete(`/v2/users/${user.id}`).set(auth()).expect(200);

    await receiver.waitFor(() => receiver.on('/all').length >= 5 && receiver.on('/deleted-only').length >= 1, 15_000, settle);
    const got = receiver.on('/all');
    expect(got.map((r) => r.json.event)).toEqual(['user.created', 'user.updated', 'user.role_changed', 'user.login', 'user.deleted']);
    const verifier = new Webhook(all.secret);
    for (const r of got) {
      expect(() => verifier.verify(r.body, r.headers as Record<string, string>)).not.toThrow();
      expect(r.headers['webhook-id']).toMatch(/^whd_/);
      expect(r.json).toEqual({ event: expect.any(String), timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/), data: expect.any(Object), webhook_id: all.id });
    }
    expect((got[0]!.json.data as { user: Record<string, unknown> }).user).toMatchObject({
      id: user.id,
      email: user.email,
      first_name: 'Web',
      last_name: 'Hook',
      created_at: expect.stringMatching(/Z$/),
    });
    expect(JSON.stringify(got)).not.toContain(password);
    expect(JSON.stringify(got)).not.toMatch(/password_hash|argon2/);
    expect(() => verifier.verify(got[0]!.body.replace('Web', 'Bad'), got[0]!.headers as Record<string, string>)).toThrow();
    // The endpoint subscribed to user.deleted received nothing else.
    expect(receiver.on('/deleted-only').map((r) => r.json.event)).toEqual(['user.deleted']);
    expect(() => new Webhook(onlyDeleted.secret).verify(receiver.on('/deleted-only')[0]!.body, receiver.on('/deleted-only')[0]!.headers as Record<string, string>)).not.toThrow();
    await t.http().delete(`/v2/webhooks/${all.id}`).set(auth()).expect(204);
    await t.http().delete(`/v2/webhooks/${onlyDeleted.id}`).set(auth()).expect(204);
  });

  it('retries a failed delivery with the same webhook-id (500, then 200) and records both attempts', async () => {
    receiver.respond('/flaky', 500, 200);
    const hook = (await register({ url: receiver.url('/flaky'), events: ['user.created'] }).expect(201)).body;
    await t.http().post('/v2/users').set(auth()).send({ email: email(), first_name: 'R', last_name: 'T' }).expect(201);
    await receiver.waitFor(() => receiver.on('/flaky').length >= 2, 20_000, settle);
    const [first, second] = receiver.on('/flaky');
    expect(second!.headers['webhook-id']).toBe(first!.headers['webhook-id']);
    expect(second!.body).toBe(first!.body);
    await settle();
    const deliveries = await t.http().get(`/v2/webhooks/${hook.id}/deliveries`).set(auth()).expect(200);
    expect(deliveries.body.data[0]).toMatchObject({ status: 'succeeded', attempts: 2, response_code: 200, next_attempt_at: null });
    expect(deliveries.body.data[0].attempt_log.map((a: { status_code: number }) => a.status_code)).toEqual([500, 200]);
    expect(deliveries.body.data[0].duration_ms).toEqual(expect.any(Number));
    await t.http().delete(`/v2/webhooks/${hook.id}`).set(auth()).expect(204);
  });

  it('a 410 disables the endpoint; the test ping and manual retry work', async () => {
    receiver.respond('/gone', 410);
    const hook = (await register({ url: receiver.url('/gone'), events: ['user.created'] }).expect(201)).body;
    await t.http().post('/v2/users').set(auth()).send({ email: email(), first_name: 'G', last_name: 'O' }).expect(201);
    await receiver.waitFor(() => receiver.on('/gone').length >= 1, 15_000, settle);
    await settle();
    const read = await t.http().get(`/v2/webhooks/${hook.id}`).set(auth()).expect(200);
    expect(read.body.active).toBe(false);
    expect(read.body.disabled_reason).toMatch(/410/);
    await t.http().post('/v2/users').set(auth()).send({ email: email(), first_name: 'G', last_name: 'O' }).expect(201);
    await settle();
    expect(receiver.on('/gone')).toHaveLength(1);

    receiver.respond('/gone', 200);
    await t.http().put(`/v2/webhooks/${hook.id}`).set(auth()).send({ active: true }).expect(200);
    const ping = await t.http().post(`/v2/webhooks/${hook.id}/test`).set(auth()).expect(202);
    await receiver.waitFor(() => receiver.on('/gone').some((r) => r.json.event === 'webhook.test'), 10_000, settle);
    const failed = (await t.http().get(`/v2/webhooks/${hook.id}/deliveries`).set(auth()).expect(200)).body.data.find((d: { status: string }) => d.status === 'failed');
    await t.http().post(`/v2/webhooks/${hook.id}/deliveries/${failed.id}/retry`).set(auth()).expect(202);
    await receiver.waitFor(() => receiver.on('/gone').filter((r) => r.headers['webhook-id'] === failed.id).length === 2, 10_000, settle);
    expect(ping.body.delivery_id).toMatch(/^whd_/);
  });

  it('refuses at send time a name that resolves to a private address', async () => {
    const hook = (await register({ url: receiver.url('/rebind', 'localhost'), events: ['user.created'] }).expect(201)).body;
    await t.http().post('/v2/users').set(auth()).send({ email: email(), first_name: 'L', last_name: 'H' }).expect(201);
    await settle();
    const deliveries = (await t.http().get(`/v2/webhooks/${hook.id}/deliveries`).set(auth()).expect(200)).body.data;
    expect(deliveries[0].attempts).toBe(1);
    expect(deliveries[0].error).toBe('the host resolves to an address that is not allowed (private, loopback, link-local or internal)');
    // The delivery record never says which address the name resolved to.
    expect(JSON.stringify(deliveries)).not.toMatch(/127\.0\.0\.1|::1/);
    expect(receiver.on('/rebind')).toHaveLength(0);
  });

  it("another organization's webhooks answer 404 WEBHOOK_NOT_FOUND", async () => {
    const hook = (await register({ url: receiver.url('/mine'), events: ['*'] }).expect(201)).body;
    const created = await t.http().post('/v2/admin/organizations').set(auth()).send({ name: 'Other', plan: 'basic' }).expect(201);
    const other = (await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: created.body.api_key.key }).expect(200)).body.access_token;
    const as = { Authorization: `Bearer ${other}` };
    for (const req of [
      t.http().get(`/v2/webhooks/${hook.id}`).set(as),
      t.http().put(`/v2/webhooks/${hook.id}`).set(as).send({ active: false }),
      t.http().delete(`/v2/webhooks/${hook.id}`).set(as),
      t.http().get(`/v2/webhooks/${hook.id}/deliveries`).set(as),
      t.http().post(`/v2/webhooks/${hook.id}/test`).set(as),
      t.http().get('/v2/webhooks/garbage').set(as),
    ]) {
      const res = await req;
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('WEBHOOK_NOT_FOUND');
    }
    expect((await t.http().get('/v2/webhooks').set(as).expect(200)).body.data).toEqual([]);
  });

  it('deletes succeeded and failed deliveries past WEBHOOK_DELIVERY_RETENTION_DAYS (30) with their attempts; never pending ones', async () => {
    const hook = (await register({ url: receiver.url('/retention'), events: ['user.deleted'] }).expect(201)).body;
    const idAt = (daysAgo: number, tag: string) => `whd_${(Date.now() - daysAgo * 86_400_000).toString(36).padStart(9, '0')}${tag}`;
    const rows: [string, string][] = [
      [idAt(40, 'oldsucceeded'), 'succeeded'],
      [idAt(31, 'oldfailed'), 'failed'],
      [idAt(40, 'oldpending'), 'pending'],
      [idAt(20, 'recentsucceeded'), 'succeeded'],
    ];
    for (const [id, status] of rows) {
      await t.sql(
        `INSERT INTO webhook_deliveries (id, organization_id, webhook_id, event_type, order_key, payload, status, next_attempt_at)
         VALUES ($1, $2, $3, 'user.deleted', $1, '{}', $4, now() + interval '1 day')`,
        [id, orgId, hook.id, status],
      );
      await t.sql(
        `INSERT INTO webhook_delivery_attempts (id, delivery_id, organization_id, attempt, status_code, duration_ms) VALUES ($1, $2, $3, 1, 200, 5)`,
        [`wha_${id}`, id, orgId],
      );
    }
    expect(await t.app.get(WebhookDeliveryWorker).pruneFinished()).toBe(2);
    const left = await t.sql<{ id: string }>(`SELECT id FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id`, [hook.id]);
    expect(left.map((r) => r.id.replace(/^whd_\w{9}/, ''))).toEqual(['oldpending', 'recentsucceeded']);
    const attempts = await t.sql<{ delivery_id: string }>(`SELECT delivery_id FROM webhook_delivery_attempts WHERE organization_id = $1 AND id LIKE 'wha_whd_%' ORDER BY delivery_id`, [orgId]);
    expect(attempts.map((r) => r.delivery_id)).toEqual(left.map((r) => r.id));
    await t.http().delete(`/v2/webhooks/${hook.id}`).set(auth()).expect(204);
  });
});
