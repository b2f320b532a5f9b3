// ThisThat playground: every string that comes from outside (market questions, labels,
// usernames, server messages) is written with textContent, never parsed as HTML.
"use strict";

const state = {
  accessToken: null,
  refreshToken: null,
  socket: null,
  markets: new Map(), // id -> Market
  subscribed: new Set(),
  period: "all",
};

const $ = (id) => document.getElementById(id);

// Builds an element; children are nodes or strings (strings become text nodes).
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setText(id, text) {
  $(id).textContent = text;
}

function setStatus(text, stateName) {
  setText("status", text);
  $("status").dataset.state = stateName;
}

function log(direction, event, data) {
  const arrow = { out: "→", ack: "←", in: "⇐", replay: "⇐ replayed", info: "·" }[direction];
  const line = `${new Date().toISOString().slice(11, 23)} ${arrow} ${event} ${data === undefined ? "" : JSON.stringify(data)}`;
  const list = $("log");
  list.prepend(el("li", { dataset: { direction, event } }, line));
  while (list.childElementCount > 300) list.lastElementChild.remove();
}

// One request: emit with an ack, log both ways, resolve with the ack.
async function call(event, payload = {}) {
  log("out", event, payload);
  let ack;
  try {
    ack = await state.socket.timeout(15000).emitWithAck(event, payload);
  } catch (error) {
    ack = { ok: false, error: { code: "NO_ACK", message: String(error) } };
  }
  log("ack", event, ack);
  return ack;
}

function describeError(ack) {
  const error = ack.error || {};
  return `${error.code}: ${error.message}`;
}

// Account

async function authenticate(action) {
  setText("auth-error", "");
  const body = { username: $("username").value, password: $("password").value };
  const response = await fetch(`/auth/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json();
  log("info", `POST /auth/${action} ${response.status}`, response.ok ? { user: data.user } : data);
  if (!response.ok) {
    setText("auth-error", `${data.error.code}: ${data.error.message}`);
    return;
  }
  state.accessToken = data.accessToken;
  state.refreshToken = data.refreshToken;
  setText("me", data.user.username);
  showBalance(data.user.balance);
  connect();
}

async function refreshTokens({ tellSocket = true } = {}) {
  const response = await fetch("/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refreshToken: state.refreshToken }),
  });
  const data = await response.json();
  log("info", `POST /auth/refresh ${response.status}`, response.ok ? {} : data);
  if (!response.ok) return;
  state.accessToken = data.accessToken;
  state.refreshToken = data.refreshToken;
  state.socket.auth = { token: data.accessToken, recover: true };
  if (tellSocket) await call("auth:refresh", { token: data.accessToken });
}

function connect() {
  if (state.socket) state.socket.disconnect();
  setStatus("connecting", "connecting");
  // Opted in to connection state recovery: after a drop the socket comes back with its
  // subscriptions and the pushes it missed, which arrive right after the connect.
  const socket = io({ auth: { token: state.accessToken, recover: true }, transports: ["websocket"] });
  state.socket = socket;
  socket.onAny((event, data) => log(state.replaying ? "replay" : "in", event, data));
  socket.on("connect", () => {
    setStatus(socket.recovered ? "connected (recovered)" : "connected", "connected");
    log("info", socket.recovered ? "connect: recovered" : "connect", { id: socket.id, recovered: socket.recovered });
    if (socket.recovered) {
      state.replaying = true;
      setTimeout(() => { state.replaying = false; }, 100);
    }
    for (const id of ["claim-reward", "refresh-markets", "subscribe-all", "place-bet", "raw-send"]) {
      $(id).disabled = false;
    }
    loadEverything();
  });
  socket.on("connect_error", (error) => {
    setStatus("refused", "error");
    log("info", "connect_error", error.data || { message: error.message });
  });
  socket.on("disconnect", (reason) => {
    setStatus(`disconnected (${reason})`, "error");
    log("info", "disconnect", { reason });
    // The server disconnects a socket whose token expired (after `auth:expired`); the client
    // does not retry that by itself: connect again, with the refreshed token.
    if (reason === "io server disconnect" && state.renewal) {
      const renewal = state.renewal;
      state.renewal = null;
      renewal.then(() => socket.connect());
    }
  });
  socket.on("auth:expired", () => {
    state.renewal = refreshTokens({ tellSocket: false });
  });
  socket.on("session", (data) => {
    setText("me", data.user.username);
    showBalance(data.user.balance);
  });
  socket.on("odds", onOdds);
  socket.on("market:update", (data) => upsertMarket(data.market));
  socket.on("balance", (data) => {
    showBalance(data.balance);
    loadWallet();
  });
  socket.on("bet:settled", () => loadBets());
  socket.on("leaderboard:update", (data) => {
    if (data.period === state.period) showLeaderboard(data.entries);
  });
  socket.on("auth:expiring", () => refreshTokens());
}

async function loadEverything() {
  await Promise.all([loadMarkets(), loadWallet(), loadBets(), loadLeaderboard()]);
  // After a reconnect the rooms are gone: join the markets we were watching again.
  if (state.subscribed.size > 0) await subscribe([...state.subscribed]);
}

// Wallet

function showBalance(balance) {
  setText("balance", String(balance));
}

async function loadWallet() {
  const [wallet, history] = await Promise.all([
    call("wallet:get"),
    call("wallet:history", { limit: 10 }),
  ]);
  if (wallet.ok) {
    showBalance(wallet.data.balance);
    setText("open-stake", String(wallet.data.openStake));
  }
  if (history.ok) {
    $("history").replaceChildren(
      ...history.data.entries.map((entry) =>
        el("li", {}, `${entry.kind} ${entry.amount} → ${entry.balanceAfter}`),
      ),
    );
  }
}

async function claimReward() {
  const ack = await call("reward:claim");
  setText(
    "reward-result",
    ack.ok ? `+${ack.data.amount}; next claim ${ack.data.nextClaimAt}` : describeError(ack),
  );
  if (ack.ok) showBalance(ack.data.balance);
}

// Markets

async function loadMarkets() {
  const ack = await call("markets:list", { status: "open", limit: 100 });
  if (!ack.ok) return;
  for (const market of ack.data.markets) upsertMarket(market);
}

function upsertMarket(market) {
  state.markets.set(market.id, market);
  renderMarketRow(market);
  renderBetMarkets();
}

function oddsCell(value, previous) {
  const cell = el("td", { className: "odds" }, value === null ? "-" : String(value));
  if (previous !== undefined && previous !== null && value !== null && value !== previous) {
    cell.classList.add(value > previous ? "up" : "down");
  }
  return cell;
}

function renderMarketRow(market, previous = {}) {
  const subscribed = state.subscribed.has(market.id);
  const row = el(
    "tr",
    { dataset: { marketId: market.id } },
    el("td", { className: "question" }, market.question),
    el("td", {}, el("span", { className: "label" }, market.thisLabel), " ", oddsCell(market.thisOdds, previous.thisOdds)),
    el("td", {}, el("span", { className: "label" }, market.thatLabel), " ", oddsCell(market.thatOdds, previous.thatOdds)),
    el("td", { className: "market-status" }, market.status),
    el(
      "td",
      {},
      el("button", {
        className: "subscribe",
        textContent: subscribed ? "Unsubscribe" : "Subscribe",
        onclick: () => (subscribed ? unsubscribe([market.id]) : subscribe([market.id])),
      }),
      " ",
      el("button", { className: "bet", textContent: "Bet", onclick: () => chooseMarket(market.id) }),
    ),
  );
  const existing = document.querySelector(`tr[data-market-id="${CSS.escape(market.id)}"]`);
  if (existing) existing.replaceWith(row);
  else $("markets").append(row);
}

function onOdds(tick) {
  const market = state.markets.get(tick.marketId);
  if (!market) return;
  const previous = { thisOdds: market.thisOdds, thatOdds: market.thatOdds };
  market.thisOdds = tick.thisOdds;
  market.thatOdds = tick.thatOdds;
  market.oddsUpdatedAt = tick.at;
  renderMarketRow(market, previous);
  if ($("bet-market").value === market.id) fillExpectedOdds();
}

async function subscribe(ids) {
  const ack = await call("market:subscribe", { marketIds: ids.slice(0, 100) });
  if (!ack.ok) return;
  for (const market of ack.data.markets) {
    state.subscribed.add(market.id);
    upsertMarket(market);
  }
}

async function unsubscribe(ids) {
  const ack = await call("market:unsubscribe", { marketIds: ids });
  if (!ack.ok) return;
  for (const id of ids) {
    state.subscribed.delete(id);
    renderMarketRow(state.markets.get(id));
  }
}

// Betting

function renderBetMarkets() {
  const select = $("bet-market");
  const chosen = select.value;
  const open = [...state.markets.values()].filter((market) => market.status === "open");
  select.replaceChildren(...open.map((market) => el("option", { value: market.id }, market.question)));
  if (chosen && state.markets.has(chosen)) select.value = chosen;
  renderSideLabels();
  if (!$("bet-expected").value) fillExpectedOdds();
}

function renderSideLabels() {
  const market = state.markets.get($("bet-market").value);
  if (!market) return;
  const [thisOption, thatOption] = $("bet-side").options;
  thisOption.textContent = `this: ${market.thisLabel}`;
  thatOption.textContent = `that: ${market.thatLabel}`;
}

function chooseMarket(id) {
  $("bet-market").value = id;
  renderSideLabels();
  fillExpectedOdds();
}

function fillExpectedOdds() {
  const market = state.markets.get($("bet-market").value);
  if (!market) return;
  const odds = $("bet-side").value === "this" ? market.thisOdds : market.thatOdds;
  $("bet-expected").value = odds === null ? "" : String(odds);
}

async function placeBet() {
  const payload = {
    marketId: $("bet-market").value,
    side: $("bet-side").value,
    amount: $("bet-amount").value.trim(),
    clientBetId: `play-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
    maxSlippage: $("bet-slippage").value.trim() || "0",
  };
  const expected = $("bet-expected").value.trim();
  if (expected) payload.expectedOdds = expected;
  const ack = await call("bet:place", payload);
  if (!ack.ok) {
    setText("bet-result", describeError(ack));
    return;
  }
  const bet = ack.data.bet;
  setText("bet-result", `placed ${bet.amount} on ${bet.side} at ${bet.odds}; pays ${bet.potentialPayout}`);
  showBalance(ack.data.balance);
  loadBets();
  loadWallet();
}

async function loadBets() {
  const ack = await call("bets:list", { limit: 20 });
  if (!ack.ok) return;
  $("bets").replaceChildren(
    ...ack.data.bets.map((bet) => {
      const market = state.markets.get(bet.marketId);
      return el(
        "li",
        {},
        `${bet.status} · ${bet.amount} on ${bet.side} at ${bet.odds} · `,
        el("span", { className: "question" }, market ? market.question : bet.marketId),
      );
    }),
  );
}

// Leaderboard

async function loadLeaderboard() {
  const period = $("leaderboard-period").value;
  if (period !== state.period) {
    await call("leaderboard:unsubscribe", { period: state.period });
    state.period = period;
  }
  await call("leaderboard:subscribe", { period });
  const ack = await call("leaderboard:get", { period, limit: 20 });
  if (ack.ok) showLeaderboard(ack.data.entries);
}

function showLeaderboard(entries) {
  $("leaderboard").replaceChildren(
    ...entries.map((entry) => el("li", { value: entry.rank }, `${entry.username} `, el("strong", {}, String(entry.pnl)))),
  );
}

// Raw events

async function sendRaw() {
  let payload;
  try {
    payload = JSON.parse($("raw-payload").value || "{}");
  } catch (error) {
    log("info", "not JSON", { message: String(error) });
    return;
  }
  await call($("raw-event").value.trim(), payload);
}

// Wiring

$("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  authenticate(event.submitter && event.submitter.dataset.action === "login" ? "login" : "signup");
});
$("claim-reward").addEventListener("click", claimReward);
$("refresh-markets").addEventListener("click", loadMarkets);
$("subscribe-all").addEventListener("click", () => {
  const open = [...state.markets.values()].filter((market) => market.status === "open");
  subscribe(open.map((market) => market.id));
});
$("bet-market").addEventListener("change", () => {
  renderSideLabels();
  fillExpectedOdds();
});
$("bet-side").addEventListener("change", fillExpectedOdds);
$("bet-form").addEventListener("submit", (event) => {
  event.preventDefault();
  placeBet();
});
$("leaderboard-period").addEventListener("change", loadLeaderboard);
$("raw-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sendRaw();
});
