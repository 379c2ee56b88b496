'use strict';

/**
 * Building blocks for scripts/bench.js: database set-up and seeding, the API child process,
 * a small JSON HTTP client, an autocannon wrapper and the report. Plain CommonJS, no build step.
 * Everything here talks to loopback addresses only.
 */

const { spawn } = require('node:child_process');
const { createWriteStream, mkdirSync } = require('node:fs');
const os = require('node:os');
const { dirname } = require('node:path');

// ---------------------------------------------------------------------------------------------
// Data used by the seed and by the scenarios (search terms come from the same arrays).

const FIRST_NAMES = [
  'James', 'Mary', 'John', 'Patricia', 'Robert', 'Jennifer', 'Michael', 'Linda', 'William', 'Elizabeth',
  'David', 'Barbara', 'Richard', 'Susan', 'Joseph', 'Jessica', 'Thomas', 'Sarah', 'Charles', 'Karen',
  'Christopher', 'Nancy', 'Daniel', 'Lisa', 'Matthew', 'Betty', 'Anthony', 'Margaret', 'Mark', 'Sandra',
  'Aisha', 'Wei', 'Priya', 'Mateo', 'Sofia', 'Yuki', 'Olga', 'Kwame', 'Fatima', 'Lars',
];
const LAST_NAMES = [
  'Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis', 'Rodriguez', 'Martinez',
  'Hernandez', 'Lopez', 'Gonzalez', 'Wilson', 'Anderson', 'Taylor', 'Moore', 'Jackson', 'Martin', 'Lee',
  'Perez', 'Thompson', 'White', 'Harris', 'Sanchez', 'Clark', 'Ramirez', 'Lewis', 'Robinson', 'Walker',
  'Young', 'Allen', 'King', 'Wright', 'Scott', 'Torres', 'Nguyen', 'Hill', 'Flores', 'Okafor',
];
const DEPARTMENTS = ['engineering', 'marketing', 'sales', 'support', 'finance', 'hr', 'legal', 'operations'];

/** Seeded ids are `user_bench` + this many digits (so at most 9,999,999 seeded users). */
const BENCH_ID_PREFIX = 'user_bench';
const BENCH_ID_DIGITS = 7;
const MAX_BENCH_USERS = 10 ** BENCH_ID_DIGITS - 1;

function benchUserId(n) {
  return BENCH_ID_PREFIX + String(n).padStart(BENCH_ID_DIGITS, '0');
}

/**
 * Indexes the seed drops while it inserts and builds again at the end (one build is much cheaper
 * than a million insertions into them), each exactly as its migration creates it.
 */
const SEED_REBUILT_INDEXES = [
  // Migration 1764230600000-CreateUsers.
  {
    name: 'IDX_users_search_trgm',
    sql: `CREATE INDEX "IDX_users_search_trgm" ON "users" USING gin ((lower("first_name" || ' ' || "last_name" || ' ' || "email")) gin_trgm_ops)`,
  },
  // Migration 1764231800000-UserLoginSortKeys.
  {
    name: 'IDX_user_login_sort_keys_org_last_login',
    sql: `CREATE INDEX "IDX_user_login_sort_keys_org_last_login" ON "user_login_sort_keys" ("organization_id", "last_login", "user_id")`,
  },
  {
    name: 'IDX_user_login_sort_keys_org_login_count',
    sql: `CREATE INDEX "IDX_user_login_sort_keys_org_login_count" ON "user_login_sort_keys" ("organization_id", "login_count", "user_id")`,
  },
];

const BENCH_ORG_LIMITS = '{"requests_per_hour": 1000000000, "burst_per_second": 1000000, "concurrent_requests": 100000}';

// ---------------------------------------------------------------------------------------------
// Small utilities

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function pick(array) {
  return array[Math.floor(Math.random() * array.length)];
}

function randomInt(min, max) {
  return min + Math.floor(Math.random() * (max - min + 1));
}

function envInt(name, fallback, min, max) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer between ${min} and ${max} (got "${raw}")`);
  }
  return value;
}

/** Rejects after `ms` with `message`; the timer never keeps the process alive by itself. */
async function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function formatDuration(ms) {
  if (ms < 1000) return `${ms.toFixed(0)} ms`;
  const s = ms / 1000;
  return s < 120 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function truncate(text, max = 600) {
  const s = typeof text === 'string' ? text : JSON.stringify(text);
  return s.length > max ? `${s.slice(0, max)}… (${s.length} chars)` : s;
}

// ---------------------------------------------------------------------------------------------
// Database

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

function isLoopbackHost(host) {
  if (!host) return true; // no host: a Unix socket
  if (host.startsWith('/')) return true; // a socket directory
  const h = host.toLowerCase();
  return LOOPBACK_NAMES.has(h) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h.endsWith('.localhost');
}

/** Throws unless every host the URL names is a loopback address or a Unix socket. */
function assertLoopbackDatabaseUrl(url) {
  const parsed = new URL(url);
  const hosts = [parsed.hostname, ...parsed.searchParams.getAll('host')];
  for (const host of hosts) {
    if (!isLoopbackHost(host)) {
      throw new Error(`DATABASE_URL points at "${host}": the benchmark only talks to loopback addresses (127.0.0.1, ::1, localhost) or Unix sockets`);
    }
  }
}

function withDatabaseName(url, database) {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** Creates `database` on the server behind `url` unless it exists. */
async function ensureDatabase(url, database) {
  const { Client } = require('pg');
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE "${database.replace(/"/g, '')}"`);
  } catch (error) {
    if (error.code !== '42P04') throw error; // created meanwhile by someone else
  } finally {
    await client.end();
  }
}

async function connect(url) {
  const { Client } = require('pg');
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  return client;
}

/**
 * The Default organization and its `user` role, the org's user count and the seeded range.
 * Throws a readable error when the schema is not there yet.
 */
async function inspectDatabase(client) {
  const org = await client.query(`SELECT id FROM organizations WHERE name = 'Default' ORDER BY created_at LIMIT 1`);
  if (org.rowCount === 0) throw new Error('no organization named "Default" (the API creates it on first start)');
  const orgId = org.rows[0].id;
  const tables = await client.query(
    `SELECT to_regclass('public.users') IS NOT NULL AS users, to_regclass('public.roles') IS NOT NULL AS roles`,
  );
  if (!tables.rows[0].users) throw new Error('table "users" does not exist (migration CreateUsers not run by this build)');
  let roleId = null;
  if (tables.rows[0].roles) {
    const role = await client.query(`SELECT id FROM roles WHERE organization_id = $1 AND name = 'user'`, [orgId]);
    roleId = role.rowCount > 0 ? role.rows[0].id : null;
  }
  const counts = await client.query(
    `SELECT count(*)::bigint AS total,
            coalesce(max(CASE WHEN id LIKE 'user\\_bench%' THEN substr(id, ${BENCH_ID_PREFIX.length + 1})::bigint END), 0) AS max_bench
       FROM users WHERE organization_id = $1`,
    [orgId],
  );
  return {
    orgId,
    roleId,
    totalUsers: Number(counts.rows[0].total),
    maxBench: Number(counts.rows[0].max_bench),
  };
}

/**
 * How closely the users table's physical order follows created_at (PostgreSQL's statistics, -1 to
 * 1). Users made through the API are appended in created_at order, so a healthy table is near 1;
 * a bench database seeded before session 9 holds its users in random created_at order (near 0).
 */
async function createdAtCorrelation(client) {
  const r = await client.query(`SELECT correlation FROM pg_stats WHERE schemaname = 'public' AND tablename = 'users' AND attname = 'created_at'`);
  return r.rows.length > 0 && r.rows[0].correlation !== null ? Number(r.rows[0].correlation) : undefined;
}

/** The seed's rebuilt indexes that are missing (a seed interrupted before it built them again). */
async function missingSeedIndexes(client) {
  const missing = [];
  for (const index of SEED_REBUILT_INDEXES) {
    const r = await client.query(`SELECT to_regclass($1) IS NOT NULL AS present`, [`public."${index.name}"`]);
    if (!r.rows[0].present) missing.push(index);
  }
  return missing;
}

/**
 * Inserts `count` users numbered from `from`, one INSERT … SELECT … FROM generate_series per chunk,
 * with the SEED_REBUILT_INDEXES dropped meanwhile and rebuilt (exactly as their migrations do) at the end.
 * Distributions: names skewed (a few common, many rare), ~90% active, created over the past
 * 2 years, ~70% have logged in. created_at grows with the insertion order (about a minute apart), as
 * it does for users made through the API (created_at is the time of the insert, never the client's):
 * a table whose rows were created in random order would be a layout the API cannot produce, and
 * every walk in created_at order (lists, cursors, search) would read a page per row instead of a
 * few rows per page.
 */
async function seedUsers(client, { orgId, roleId, from, count, chunk = 100_000, log }) {
  await client.query(`SET synchronous_commit = off`);
  await client.query(`SET maintenance_work_mem = '512MB'`);
  let dropped = [];
  try {
    for (const index of SEED_REBUILT_INDEXES) {
      await client.query(`DROP INDEX IF EXISTS "${index.name}"`);
      dropped.push(index);
    }
    const last = from + count - 1;
    for (let start = from; start <= last; start += chunk) {
      const end = Math.min(last, start + chunk - 1);
      const began = Date.now();
      await client.query(
        `WITH ins AS (
         INSERT INTO users (id, organization_id, email, email_lower, first_name, last_name, role_id, status,
                            email_verified, metadata, preferences, login_count, last_login, version,
                            created_at, updated_at)
         SELECT $3 || lpad(s.n::text, ${BENCH_ID_DIGITS}, '0'),
                $4,
                'bench' || s.n || '@example.com',
                'bench' || s.n || '@example.com',
                ($6::text[])[1 + floor(power(s.r1, 1.6) * cardinality($6::text[]))::int],
                ($7::text[])[1 + floor(power(s.r2, 1.6) * cardinality($7::text[]))::int],
                $5,
                CASE WHEN s.r3 < 0.90 THEN 'active' WHEN s.r3 < 0.96 THEN 'inactive' ELSE 'suspended' END,
                s.r4 < 0.8,
                jsonb_build_object('department', ($8::text[])[1 + floor(s.r5 * cardinality($8::text[]))::int]),
                '{}'::jsonb,
                CASE WHEN s.r6 < 0.7 THEN 1 + floor(power(s.r7, 3) * 500)::int ELSE 0 END,
                CASE WHEN s.r6 < 0.7 THEN s.created + (now() - s.created) * s.r8 END,
                1,
                s.created,
                s.created + (now() - s.created) * s.r9 * s.r9
           FROM (SELECT g.n, random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5,
                        random() AS r6, random() AS r7, random() AS r8, random() AS r9,
                        now() - interval '730 days' * (($9::bigint - g.n + random()) / $9::bigint) AS created
                   FROM generate_series($1::bigint, $2::bigint) AS g(n)
                 OFFSET 0) AS s
         RETURNING id, organization_id, last_login, login_count)
         INSERT INTO user_login_sort_keys (user_id, organization_id, last_login, login_count)
         SELECT id, organization_id, COALESCE(last_login, '-infinity'), login_count FROM ins`,
        [start, end, BENCH_ID_PREFIX, orgId, roleId, FIRST_NAMES, LAST_NAMES, DEPARTMENTS, last],
      );
      log(`  inserted users ${start}..${end} in ${formatDuration(Date.now() - began)}`);
    }
    while (dropped.length > 0) {
      const began = Date.now();
      await client.query(dropped[0].sql);
      log(`  rebuilt "${dropped.shift().name}" in ${formatDuration(Date.now() - began)}`);
    }
  } finally {
    // Never leave a table without its indexes, whatever happened above.
    for (const index of dropped) await client.query(index.sql).catch(() => undefined);
  }
  const began = Date.now();
  // VACUUM now rather than letting autovacuum's insert threshold fire in the middle of a scenario.
  await client.query(`VACUUM users, user_login_sort_keys`);
  await client.query(`ANALYZE users, user_login_sort_keys`);
  log(`  VACUUM + ANALYZE users in ${formatDuration(Date.now() - began)}`);
}

// ---------------------------------------------------------------------------------------------
// The API process

/**
 * Starts `node <entry>` with `env` (merged over `baseEnv`), logs its output to `logFile` and keeps
 * the last lines in memory, and waits until GET /health answers 200.
 */
async function startServer({ entry, env, baseEnv, logFile, timeoutMs, port }) {
  mkdirSync(dirname(logFile), { recursive: true });
  const logStream = createWriteStream(logFile, { flags: 'a' });
  logStream.write(`\n--- bench run ${new Date().toISOString()} ---\n`);
  const childEnv = {};
  for (const [k, v] of Object.entries({ ...baseEnv, ...env })) if (v !== undefined) childEnv[k] = String(v);
  // BENCH_NODE_ARGS: extra node flags for the API process (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, entry], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const tail = [];
  const problems = []; // warn (40) and above, parsed from pino's JSON lines
  let pending = '';
  const onData = (chunk) => {
    logStream.write(chunk);
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const line of lines) {
      if (!line.trim()) continue;
      tail.push(line);
      if (tail.length > 200) tail.shift();
      try {
        const entry = JSON.parse(line);
        if (typeof entry.level === 'number' && entry.level >= 40) problems.push(line);
      } catch {
        problems.push(line); // not JSON: a crash trace or similar
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  let exitCode;
  const exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      exitCode = code ?? signal;
      resolve(exitCode);
    }),
  );
  const baseUrl = `http://127.0.0.1:${port}`;
  const server = {
    child,
    baseUrl,
    exited,
    tail: () => tail.join('\n'),
    problems,
    logFile,
    /** SIGTERM (the API drains and exits 0), SIGKILL if it has not exited after `graceMs`. */
    async stop(graceMs = 15_000) {
      if (exitCode === undefined) {
        child.kill('SIGTERM');
        const code = await Promise.race([exited, sleep(graceMs).then(() => 'timeout')]);
        if (code === 'timeout') {
          child.kill('SIGKILL');
          await Promise.race([exited, sleep(5_000)]);
        }
      }
      await new Promise((resolve) => logStream.end(resolve));
      return exitCode;
    },
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exitCode !== undefined) {
      await server.stop();
      throw new Error(`the API exited (${exitCode}) before it was healthy; last output:\n${server.tail()}`);
    }
    try {
      const res = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(5_000) });
      await res.arrayBuffer();
      if (res.status === 200) return server;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await server.stop(5_000);
      throw new Error(`GET /health did not answer 200 within ${timeoutMs / 1000} s; last output:\n${server.tail()}`);
    }
    await sleep(250);
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/** One JSON request; never throws on a status, only on a network failure or the timeout. */
/** Starts scripts/bench-baseline-server.js and waits for its JSON line (port and token). */
async function startBaselineServer({ script, databaseUrl, baseEnv, timeoutMs = 30_000 }) {
  const env = { ...baseEnv, DATABASE_URL: databaseUrl, PORT: '0' };
  const child = spawn(process.execPath, [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const info = await withTimeout(
    new Promise((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const line = out.split('\n')[0];
        if (out.includes('\n')) {
          try {
            resolve(JSON.parse(line));
          } catch (error) {
            reject(error);
          }
        }
      });
      child.on('exit', (code) => reject(new Error(`the yardstick server exited (${code}): ${stderr}`)));
    }),
    timeoutMs,
    'the yardstick server did not start',
  );
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return {
    baseUrl: `http://127.0.0.1:${info.port}`,
    token: info.token,
    pid: child.pid,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await withTimeout(exited, 10_000, 'yardstick did not stop').catch(() => child.kill('SIGKILL'));
    },
  };
}

async function request(baseUrl, method, path, { token, body, timeoutMs = 30_000 } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(baseUrl + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, ok: res.status >= 200 && res.status < 300, json, text };
}

class ApiError extends Error {
  constructor(what, res) {
    super(`${what}: HTTP ${res.status} ${truncate(res.text, 400)}`);
    this.status = res.status;
    this.body = res.text;
  }
}

/**
 * Waits until the API has finished the work a load run left behind: autocannon closes its
 * connections when its time is up, but the server still completes the requests in flight (a
 * burst of 32 bulk imports can take seconds), which would otherwise be billed to the next
 * scenario. Idle means GET /health (which queries the database) answers in under `fastMs`
 * several times in a row. Returns the milliseconds waited.
 */
async function settle(baseUrl, { fastMs = 25, streak = 3, maxMs = 60_000 } = {}) {
  const began = Date.now();
  let fast = 0;
  while (fast < streak && Date.now() - began < maxMs) {
    const t = process.hrtime.bigint();
    try {
      const res = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(10_000) });
      await res.arrayBuffer();
      fast = Number(process.hrtime.bigint() - t) / 1e6 < fastMs && res.status === 200 ? fast + 1 : 0;
    } catch {
      fast = 0;
    }
    await sleep(fast > 0 ? 50 : 200);
  }
  return Date.now() - began;
}

// ---------------------------------------------------------------------------------------------
// Load

/**
 * Runs autocannon against one scenario. `requests` are autocannon request objects; each gets
 * hooks that remember, per status code, the first few non-2xx responses (method, path, body).
 */
/**
 * One request of a scenario on an idle server (before its load): its status and latency, and the
 * body when it is not a 2xx. Tells a slow endpoint from a saturated one, and catches a broken
 * scenario before a run full of errors.
 */
async function probe(baseUrl, template) {
  const base = { method: template.method ?? 'GET', path: template.path, headers: { ...template.headers }, body: template.body };
  const req = template.setupRequest ? template.setupRequest(base, {}) : base;
  const began = process.hrtime.bigint();
  const res = await fetch(baseUrl + req.path, {
    method: req.method,
    headers: req.headers,
    body: req.body,
    signal: AbortSignal.timeout(60_000),
  });
  const text = await res.text();
  const ms = Number(process.hrtime.bigint() - began) / 1e6;
  const ok = res.status >= 200 && res.status < 300;
  return { request: `${req.method} ${req.path}`, status: res.status, ms, body: ok ? undefined : truncate(text, 800) };
}

/**
 * A request still unanswered after `timeoutSeconds` (default: the run's length, at most 30 s)
 * counts as an error, so a run in which nothing completes cannot pass for an empty one.
 */
// ---------------------------------------------------------------------------------------------
// CPU accounting (Linux /proc): where the machine's time went during a scenario. On a shared
// virtual machine the wall-clock rate varies with the neighbours; CPU milliseconds per request do
// much less, and "steal" says how much of the two CPUs the hypervisor gave to someone else.

const CLOCK_TICKS_PER_SECOND = 100;

function readText(path) {
  try {
    return require('node:fs').readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** CPU ms used so far by a process (user + system), or undefined when it is gone. */
function processCpuMs(pid) {
  const stat = readText(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** Pids of every PostgreSQL server process on this machine (embedded or served). */
function postgresPids() {
  const fs = require('node:fs');
  let entries;
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  return entries.filter((pid) => (readText(`/proc/${pid}/comm`) ?? '').trim() === 'postgres').map(Number);
}

function machineTicks() {
  const line = (readText('/proc/stat') ?? '').split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return undefined;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal };
}

/** Starts counting; the returned function stops and reports for `requests` requests. */
function cpuMeter({ apiPid }) {
  const pgBefore = new Map(postgresPids().map((pid) => [pid, processCpuMs(pid) ?? 0]));
  const apiBefore = apiPid ? processCpuMs(apiPid) : undefined;
  const selfBefore = process.cpuUsage();
  const machineBefore = machineTicks();
  return (requests) => {
    let pgMs = 0;
    for (const pid of postgresPids()) {
      const now = processCpuMs(pid);
      if (now !== undefined) pgMs += now - (pgBefore.get(pid) ?? 0);
    }
    const apiAfter = apiPid ? processCpuMs(apiPid) : undefined;
    const self = process.cpuUsage(selfBefore);
    const machineAfter = machineTicks();
    const per = (ms) => (requests > 0 && ms !== undefined ? Number((ms / requests).toFixed(3)) : null);
    let steal = null;
    if (machineBefore && machineAfter) {
      const d = (k) => machineAfter[k] - machineBefore[k];
      const all = d('busy') + d('idle') + d('steal');
      steal = all > 0 ? Number(((100 * d('steal')) / all).toFixed(1)) : null;
    }
    return {
      api_cpu_ms_per_request: per(apiAfter !== undefined && apiBefore !== undefined ? apiAfter - apiBefore : undefined),
      db_cpu_ms_per_request: per(pgMs),
      load_generator_cpu_ms_per_request: per((self.user + self.system) / 1000),
      steal_percent: steal,
    };
  };
}

async function runLoad({ baseUrl, requests, connections, seconds, timeoutSeconds = Math.min(30, seconds), apiPid }) {
  const autocannon = require('autocannon');
  const stopMeter = cpuMeter({ apiPid });
  const samples = {};
  const instrumented = requests.map((r) => {
    const setup = r.setupRequest;
    return {
      ...r,
      setupRequest: (req, context) => {
        const out = setup ? setup(req, context) : req;
        context.last = { method: out.method, path: out.path, body: out.body };
        return out;
      },
      onResponse: (status, body, context) => {
        if (status >= 200 && status < 300) return;
        const list = (samples[status] ??= []);
        if (list.length < 3) {
          const last = context.last ?? {};
          list.push({
            status,
            request: `${last.method ?? r.method ?? 'GET'} ${last.path ?? r.path}`,
            request_body: last.body ? truncate(String(last.body), 300) : undefined,
            response_body: truncate(body, 800),
          });
        }
      },
    };
  });
  const result = await autocannon({
    url: baseUrl,
    connections,
    duration: seconds,
    timeout: timeoutSeconds,
    requests: instrumented,
  });
  const cpu = stopMeter(result.requests.total);
  const statusCodes = {};
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = Number(stat.count);
  return {
    cpu,
    requests_per_sec: result.requests.average,
    requests_total: result.requests.total,
    duration_s: result.duration,
    latency_ms: {
      avg: result.latency.average,
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      max: result.latency.max,
    },
    non_2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    status_codes: statusCodes,
    error_samples: Object.values(samples).flat(),
  };
}

// ---------------------------------------------------------------------------------------------
// Report

function verdictFor(row) {
  if (row.skipped) return 'SKIPPED (setup failed)';
  const m = row.measured;
  const failures = (m.non_2xx ?? 0) + (m.errors ?? 0);
  if (failures > 0) return `ERRORS (${failures} failed)`;
  if (!m.requests_total) return 'ERRORS (no response)';
  if (row.target_rps === undefined && row.target_p99_ms === undefined) return '-';
  const misses = [];
  if (row.target_rps !== undefined && m.requests_per_sec < row.target_rps) misses.push('req/s');
  if (row.target_p99_ms !== undefined && !(m.latency_ms.p99 < row.target_p99_ms)) misses.push('p99');
  return misses.length === 0 ? 'PASS' : `FAIL (${misses.join(', ')})`;
}

function renderTable(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

function resultsTable(rows) {
  const num = (v, digits = 0) => (v === undefined || v === null || Number.isNaN(v) ? '-' : Number(v).toFixed(digits));
  return renderTable(
    ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'target req/s', 'target p99', 'verdict', 'API ms/req', 'DB ms/req', 'steal %'],
    rows.map((row) => {
      const m = row.measured;
      const failed = m ? `${m.non_2xx}${m.errors ? ` (+${m.errors} conn err)` : ''}` : '-';
      return [
        row.label,
        m ? num(m.requests_per_sec, 0) : '-',
        m ? num(m.latency_ms.p50, 0) : '-',
        m ? num(m.latency_ms.p99, 0) : '-',
        failed,
        row.target_rps === undefined ? '-' : `≥ ${row.target_rps}`,
        row.target_p99_ms === undefined ? '-' : `< ${row.target_p99_ms} ms`,
        row.verdict,
        m?.cpu ? num(m.cpu.api_cpu_ms_per_request, 2) : '-',
        m?.cpu ? num(m.cpu.db_cpu_ms_per_request, 2) : '-',
        m?.cpu ? num(m.cpu.steal_percent, 0) : '-',
      ];
    }),
  );
}

/** Mean time of an argon2id hash at the API's parameters, in this process (a calibration for login). */
async function argon2idHashMs(count = 20) {
  const { hash, Algorithm } = require('@node-rs/argon2');
  const options = { algorithm: Algorithm.Argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 };
  await hash('warm-up', options);
  const began = process.hrtime.bigint();
  for (let i = 0; i < count; i++) await hash(`calibration-${i}`, options);
  return Number(process.hrtime.bigint() - began) / 1e6 / count;
}

/**
 * Estimates each scenario's figures on the machine the targets were set on, from how this machine
 * compares with it right now: throughput times (reference ÷ here), latency times (here ÷ reference).
 * Needs the yardstick scenario; password login uses the argon2id calibration instead.
 */
function projectOntoReference(rows, { reference, argon2idMs }) {
  const yardstick = rows.find((r) => r.name === 'baseline' && r.measured?.requests_per_sec > 0);
  const ioFactorOf = (r) => {
    const rps = r.yardstick_rps ?? yardstick?.measured.requests_per_sec;
    return rps ? reference.yardstick_rps / rps : undefined;
  };
  const cpuFactor = argon2idMs ? argon2idMs / reference.argon2id_ms : undefined;
  const projected = rows
    .filter((r) => r.measured && r.name !== 'baseline' && !r.skipped)
    .map((r) => {
      const factor = r.name === 'login' ? cpuFactor : ioFactorOf(r);
      if (factor === undefined) return undefined;
      const rps = r.measured.requests_per_sec * factor;
      const p99 = r.measured.latency_ms.p99 / factor;
      const misses = [];
      if (r.target_rps !== undefined && rps < r.target_rps) misses.push('req/s');
      if (r.target_p99_ms !== undefined && !(p99 < r.target_p99_ms)) misses.push('p99');
      const verdict = r.target_rps === undefined && r.target_p99_ms === undefined ? '-' : misses.length ? `below (${misses.join(', ')})` : 'meets';
      return { name: r.name, label: r.label, factor: Number(factor.toFixed(2)), projected_rps: Math.round(rps), projected_p99_ms: Math.round(p99), verdict };
    })
    .filter(Boolean);
  if (projected.length === 0) return undefined;
  const text =
    `Projection onto the issue's machine (an estimate, not a measurement): each scenario's figures times ` +
    `(${reference.yardstick_rps} req/s, the yardstick there) ÷ (the yardstick here, measured just before that scenario)` +
    (cpuFactor ? `; for login, argon2id's ${argon2idMs.toFixed(1)} ms a hash here ÷ about ${reference.argon2id_ms} there` : '') +
    '.\n' +
    renderTable(
      ['scenario', 'factor', 'projected req/s', 'projected p99 ms', 'target req/s', 'target p99', 'projected'],
      projected.map((p) => {
        const row = rows.find((r) => r.name === p.name);
        return [
          p.label,
          `× ${p.factor}`,
          p.projected_rps,
          p.projected_p99_ms,
          row.target_rps === undefined ? '-' : `≥ ${row.target_rps}`,
          row.target_p99_ms === undefined ? '-' : `< ${row.target_p99_ms} ms`,
          p.verdict,
        ];
      }),
    );
  return { text, rows: projected };
}

function machineInfo() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpu_model: cpus[0]?.model?.trim() ?? 'unknown',
    total_memory_gib: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    load_average_at_start: os.loadavg().map((v) => Number(v.toFixed(2))),
  };
}

module.exports = {
  argon2idHashMs,
  projectOntoReference,
  startBaselineServer,
  FIRST_NAMES,
  LAST_NAMES,
  DEPARTMENTS,
  BENCH_ORG_LIMITS,
  MAX_BENCH_USERS,
  SEED_REBUILT_INDEXES,
  ApiError,
  assertLoopbackDatabaseUrl,
  benchUserId,
  connect,
  ensureDatabase,
  envInt,
  formatDuration,
  inspectDatabase,
  machineInfo,
  pick,
  probe,
  randomInt,
  request,
  resultsTable,
  runLoad,
  missingSeedIndexes,
  seedUsers,
  createdAtCorrelation,
  settle,
  sleep,
  startServer,
  truncate,
  verdictFor,
  withDatabaseName,
  withTimeout,
};
