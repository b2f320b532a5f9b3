// A bet server the way a Node team would first write it, to measure ThisThat against: a socket.io
// server and a node-postgres pool, one SQL transaction per bet, in ThisThat's own database and
// schema (so its rows meet the same constraints and `thisthat audit` checks them).
//
// node peer_server.mjs            (env: PORT, HOST, DATABASE_URL, JWT_ACCESS_SECRET, and
//                                   optionally PG_POOL_MAX, ODDS_MAX_AGE_S, MIN_BET_AMOUNT,
//                                   MAX_BET_AMOUNT, MAX_BALANCE, JWT_ISSUER, JWT_AUDIENCE)
//
// Events: `markets:list` (open markets, soonest end first) and `bet:place`, with ThisThat's ack
// shapes ({ok: true, data} or {ok: false, error: {code, message}}); any other event is answered
// UNKNOWN_EVENT. The handshake's auth.token is ThisThat's access token, verified here (HS256,
// type, issuer, audience, expiry) with the same secret. Prints "LISTENING <port>" once ready.
//
// Lock order is the schema's: the market row FOR SHARE, then the user row FOR UPDATE, so the
// peer can run beside ThisThat's settlement and odds updates without deadlocks. Seven round
// trips a bet: BEGIN, market, user, bet, balance, ledger, COMMIT.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import pg from "pg";
import { Server } from "socket.io";

const env = process.env;
const ISSUER = env.JWT_ISSUER ?? "thisthat";
const AUDIENCE = env.JWT_AUDIENCE ?? "thisthat-clients";
const SECRET = env.JWT_ACCESS_SECRET;
const ODDS_MAX_AGE_S = Number(env.ODDS_MAX_AGE_S ?? 120);
const MIN_BET = env.MIN_BET_AMOUNT ?? "10";
const MAX_BET = env.MAX_BET_AMOUNT ?? "10000";
const MAX_BALANCE = env.MAX_BALANCE ?? "1000000";
const AMOUNT = /^\d{1,8}(\.\d{1,2})?$/;
const CLIENT_BET_ID = /^[A-Za-z0-9_-]{1,64}$/;
const UUID = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

if (!env.DATABASE_URL || !SECRET) {
  console.error("peer_server: DATABASE_URL and JWT_ACCESS_SECRET are required");
  process.exit(2);
}

const pool = new pg.Pool({
  connectionString: env.DATABASE_URL,
  max: Number(env.PG_POOL_MAX ?? 10),
});

class Refusal extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.code = code;
    this.extra = extra;
  }
}

function fail(code, message, extra) {
  throw new Refusal(code, message, extra);
}

function decodePart(part) {
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

/** The user id of a valid access token; refuses like ThisThat's handshake. */
function verifyAccessToken(token) {
  if (!token) fail("AUTH_REQUIRED", "a token is required");
  if (typeof token !== "string") fail("TOKEN_INVALID", "token must be a string");
  const parts = token.split(".");
  if (parts.length !== 3) fail("TOKEN_INVALID", "invalid access token");
  let header;
  let claims;
  try {
    header = decodePart(parts[0]);
    claims = decodePart(parts[1]);
  } catch {
    fail("TOKEN_INVALID", "invalid access token");
  }
  const expected = createHmac("sha256", SECRET).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], "base64url");
  if (
    header?.alg !== "HS256" ||
    given.length !== expected.length ||
    !timingSafeEqual(given, expected) ||
    claims?.typ !== "access" ||
    claims.iss !== ISSUER ||
    claims.aud !== AUDIENCE ||
    typeof claims.sub !== "string" ||
    !Number.isInteger(claims.exp)
  ) {
    fail("TOKEN_INVALID", "invalid access token");
  }
  if (claims.exp * 1000 <= Date.now()) fail("TOKEN_EXPIRED", "access token expired");
  return claims.sub;
}

// Credits and odds leave PostgreSQL as NUMERIC text; at most 9 significant digits here, so a
// JSON number written from them carries the exact decimal.
const number = (text) => (text === null ? null : Number(text));
const iso = (date) => (date === null ? null : date.toISOString());

function marketView(row) {
  return {
    id: row.id,
    question: row.question,
    thisLabel: row.this_label,
    thatLabel: row.that_label,
    thisOdds: number(row.this_odds),
    thatOdds: number(row.that_odds),
    oddsUpdatedAt: iso(row.odds_updated_at),
    status: row.status,
    endsAt: iso(row.ends_at),
    resolvedSide: row.resolved_side,
    category: row.category,
    imageUrl: row.image_url,
    source: row.source,
    sourceId: row.source_id,
  };
}

function betView(row) {
  return {
    id: row.id,
    clientBetId: row.client_bet_id,
    marketId: row.market_id,
    side: row.side,
    amount: number(row.amount),
    odds: number(row.odds),
    potentialPayout: number(row.potential_payout),
    status: row.status,
    payout: number(row.payout),
    placedAt: iso(row.placed_at),
    settledAt: iso(row.settled_at),
  };
}

async function listMarkets(payload) {
  const limit = payload?.limit ?? 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
    fail("VALIDATION_ERROR", "limit must be 1-200", { details: { field: "limit" } });
  }
  const { rows } = await pool.query(
    "SELECT * FROM markets WHERE status = 'open' ORDER BY ends_at NULLS LAST, id LIMIT $1",
    [limit],
  );
  return { markets: rows.map(marketView), nextCursor: null };
}

function checkBet(payload) {
  const { marketId, side, amount, clientBetId, expectedOdds, maxSlippage } = payload ?? {};
  if (typeof marketId !== "string" || !UUID.test(marketId)) {
    fail("VALIDATION_ERROR", "marketId must be a UUID", { details: { field: "marketId" } });
  }
  if (side !== "this" && side !== "that") {
    fail("VALIDATION_ERROR", "side must be this or that", { details: { field: "side" } });
  }
  if (typeof clientBetId !== "string" || !CLIENT_BET_ID.test(clientBetId)) {
    fail("VALIDATION_ERROR", "bad clientBetId", { details: { field: "clientBetId" } });
  }
  const text = typeof amount === "number" || typeof amount === "string" ? String(amount) : "";
  if (!AMOUNT.test(text) || Number(text) < Number(MIN_BET) || Number(text) > Number(MAX_BET)) {
    fail("BET_AMOUNT_OUT_OF_RANGE", `amount must be ${MIN_BET}-${MAX_BET}, 2 decimals at most`, {
      min: number(MIN_BET),
      max: number(MAX_BET),
    });
  }
  for (const [field, value] of [
    ["expectedOdds", expectedOdds],
    ["maxSlippage", maxSlippage],
  ]) {
    if (value !== undefined && value !== null && !(typeof value === "number" && value >= 0 && value < 1)) {
      fail("VALIDATION_ERROR", `${field} must be a number in [0, 1)`, { details: { field } });
    }
  }
  return {
    marketId,
    side,
    amount: text,
    clientBetId,
    expectedOdds: expectedOdds ?? null,
    maxSlippage: maxSlippage ?? 0,
  };
}

// Named queries are parsed and planned once per pooled connection (node-postgres prepares a
// named query on its first use on a client), as node-postgres' docs suggest for hot queries.
function prepared(client, name, text, values) {
  return client.query({ name, text, values });
}

/** One bet, one transaction; money arithmetic stays in NUMERIC inside PostgreSQL. */
async function placeBet(userId, payload) {
  const bet = checkBet(payload);
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const market = (
      await prepared(
        client,
        "peer-market",
        `SELECT status, accepting_orders,
                ends_at IS NOT NULL AND ends_at <= now() AS ended,
                odds_updated_at < now() - make_interval(secs => $2) AS stale,
                CASE $3::text WHEN 'this' THEN this_odds ELSE that_odds END AS odds
         FROM markets WHERE id = $1 FOR SHARE`,
        [bet.marketId, ODDS_MAX_AGE_S, bet.side],
      )
    ).rows[0];
    // The money checks are computed in NUMERIC under the user's row lock (market.odds is null
    // when the market is missing; the market checks below refuse before these are read).
    const user = (
      await prepared(
        client,
        "peer-user",
        `SELECT u.balance,
                EXISTS (SELECT 1 FROM bets b
                        WHERE b.user_id = u.id AND b.client_bet_id = $2) AS existing,
                u.balance >= $3::numeric AS covers,
                trunc($3::numeric / $4::numeric, 2) AS payout,
                $5::numeric IS NOT NULL AND $4::numeric > $5::numeric + $6::numeric AS worse,
                (u.balance - $3::numeric) + u.open_potential_payout
                  + trunc($3::numeric / $4::numeric, 2) > $7::numeric AS over_cap
         FROM users u WHERE u.id = $1 FOR UPDATE`,
        [
          userId,
          bet.clientBetId,
          bet.amount,
          market?.odds ?? null,
          bet.expectedOdds,
          bet.maxSlippage,
          MAX_BALANCE,
        ],
      )
    ).rows[0];
    if (!user) fail("AUTH_REQUIRED", "the user no longer exists");
    // Idempotency first: a repeat answers the original bet, whatever its payload.
    if (user.existing) {
      await client.query("ROLLBACK");
      const original = (
        await client.query("SELECT * FROM bets WHERE user_id = $1 AND client_bet_id = $2", [
          userId,
          bet.clientBetId,
        ])
      ).rows[0];
      return { bet: betView(original), balance: number(user.balance) };
    }
    if (!market) fail("MARKET_NOT_FOUND", "no such market");
    if (market.status !== "open") fail("MARKET_CLOSED", `market is ${market.status}`);
    if (market.ended) fail("MARKET_CLOSED", "market is past its end time");
    if (!market.accepting_orders) fail("MARKET_CLOSED", "market is not accepting orders upstream");
    if (market.stale) fail("ODDS_STALE", "the market's odds are stale");
    if (user.worse) {
      fail("ODDS_CHANGED", "the odds moved", { currentOdds: number(market.odds) });
    }
    if (!user.covers) {
      fail("INSUFFICIENT_CREDITS", `balance ${user.balance} is below ${bet.amount}`, {
        balance: number(user.balance),
      });
    }
    if (user.over_cap) fail("BALANCE_CAP_EXCEEDED", "the bet could exceed the balance cap");
    const placed = (
      await prepared(
        client,
        "peer-bet",
        `INSERT INTO bets (user_id, market_id, client_bet_id, side, amount, odds, potential_payout)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
        [userId, bet.marketId, bet.clientBetId, bet.side, bet.amount, market.odds, user.payout],
      )
    ).rows[0];
    const balance = (
      await prepared(
        client,
        "peer-debit",
        `UPDATE users SET balance = balance - $2, open_potential_payout = open_potential_payout + $3
         WHERE id = $1 RETURNING balance`,
        [userId, bet.amount, user.payout],
      )
    ).rows[0].balance;
    await prepared(
      client,
      "peer-stake",
      `INSERT INTO ledger (user_id, kind, amount, balance_after, bet_id)
       VALUES ($1, 'bet_stake', -$2::numeric, $3, $4)`,
      [userId, bet.amount, balance, placed.id],
    );
    await client.query("COMMIT");
    return { bet: betView(placed), balance: number(balance) };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

function answer(ack, work) {
  if (typeof ack !== "function") return;
  work.then(
    (data) => ack({ ok: true, data }),
    (error) => {
      if (error instanceof Refusal) {
        ack({ ok: false, error: { code: error.code, message: error.message, ...error.extra } });
      } else {
        console.error(error);
        ack({ ok: false, error: { code: "INTERNAL_ERROR", message: "internal error" } });
      }
    },
  );
}

const http = createServer();
const io = new Server(http, { transports: ["websocket", "polling"] });

io.use((socket, next) => {
  try {
    socket.data.userId = verifyAccessToken(socket.handshake.auth?.token);
    next();
  } catch (error) {
    const refusal = new Error(error.message);
    refusal.data = { code: error.code ?? "TOKEN_INVALID", message: error.message };
    next(refusal);
  }
});

io.on("connection", (socket) => {
  socket.on("markets:list", (payload, ack) => answer(ack, listMarkets(payload)));
  socket.on("bet:place", (payload, ack) => answer(ack, placeBet(socket.data.userId, payload)));
  socket.onAny((event, ...args) => {
    if (event === "markets:list" || event === "bet:place") return;
    const ack = args.at(-1);
    answer(ack, Promise.reject(new Refusal("UNKNOWN_EVENT", `unknown event ${event}`)));
  });
});

function shutdown() {
  io.close();
  pool.end().finally(() => process.exit(0));
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

http.listen(Number(env.PORT ?? 0), env.HOST ?? "127.0.0.1", () => {
  console.log(`LISTENING ${http.address().port}`);
});
