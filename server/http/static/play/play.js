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
  balanceVersion: -1, // of the balance shown
  userId: null,
  selected: null, // the market on the market screen
  chart: { interval: "1m", points: [] }, // its candles, `t` in epoch ms
  activity: [], // its recent bets, newest first
  onlineTimer: null,
  boardTimer: null, // the board around me is asked again at most once per BOARD_REFRESH_MS
  boardAgain: false,
};

const ACTIVITY_ROWS = 50;
const ONLINE_POLL_MS = 5000;
const BOARD_REFRESH_MS = 2000;
const BOARD_AROUND_ME = 7;
const INTERVAL_MS = { "1m": 60_000, "1h": 3_600_000, "1d": 86_400_000 };

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

const SVG_NS = "http://www.w3.org/2000/svg";

// The same for SVG: attributes are set one by one, strings become text nodes.
function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
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
  showUser(data.user);
  showUnversionedBalance(data.user.balance);
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
    for (const id of ["claim-reward", "refresh-markets", "subscribe-all", "place-bet", "raw-send", "anonymous"]) {
      $(id).disabled = false;
    }
    loadEverything();
    pollOnline();
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
    showUser(data.user);
    showUnversionedBalance(data.user.balance);
  });
  socket.on("odds", onOdds);
  socket.on("market:watchers", onWatchers);
  socket.on("market:activity", (data) => {
    if (data.marketId === state.selected) showActivity(data.bets, { omitted: data.omitted });
  });
  socket.on("market:update", (data) => upsertMarket(data.market));
  socket.on("balance", (data) => {
    showBalance(data);
    loadWallet();
  });
  socket.on("bet:settled", (data) => {
    showBalance(data);
    loadBets();
  });
  socket.on("leaderboard:update", (data) => {
    if (data.period !== state.period) return;
    showLeaderboard(data.entries);
    // The push carries the top only: where I stand is asked for again.
    refreshBoardAroundMe();
  });
  socket.on("auth:expiring", () => refreshTokens());
}

async function loadEverything() {
  await Promise.all([loadMarkets(), loadWallet(), loadBets(), loadLeaderboard()]);
  // After a reconnect the rooms are gone: join the markets we were watching again.
  if (state.subscribed.size > 0) await subscribe([...state.subscribed]);
  // Pushes were missed while away: the market screen starts over from the server's state.
  if (state.selected) await Promise.all([loadChart(), loadActivity()]);
}

function showUser(user) {
  state.userId = user.id;
  setText("me", user.username);
  $("anonymous").checked = Boolean(user.anonymous);
}

async function setAnonymous() {
  const wanted = $("anonymous").checked;
  const ack = await call("account:update", { anonymous: wanted });
  if (!ack.ok) {
    $("anonymous").checked = !wanted;
    setText("account-result", describeError(ack));
    return;
  }
  showUser(ack.data.user);
  setText("account-result", ack.data.user.anonymous ? "your name shows as anonymous in market activity" : "your name shows in market activity");
}

// Nobody pushes the online count: the page asks every ONLINE_POLL_MS while connected.
function pollOnline() {
  clearInterval(state.onlineTimer);
  loadOnline();
  state.onlineTimer = setInterval(loadOnline, ONLINE_POLL_MS);
}

async function loadOnline() {
  if (!state.socket || !state.socket.connected) return;
  const ack = await call("presence:get");
  if (ack.ok) setText("online", String(ack.data.online));
}

// Wallet

// Answers and pushes can cross on the way (two nodes, a settlement's push after a later bet's
// answer): the balance with the highest balanceVersion is the newest.
function showBalance({ balance, balanceVersion }) {
  if (balanceVersion <= state.balanceVersion) return;
  state.balanceVersion = balanceVersion;
  setText("balance", String(balance));
}

// A signed-in user's balance carries no version: shown until a versioned one comes.
function showUnversionedBalance(balance) {
  state.balanceVersion = -1;
  setText("balance", String(balance));
}

async function loadWallet() {
  const [wallet, history] = await Promise.all([
    call("wallet:get"),
    call("wallet:history", { limit: 10 }),
  ]);
  if (wallet.ok) {
    showBalance(wallet.data);
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
  if (ack.ok) showBalance(ack.data);
}

// Markets

async function loadMarkets() {
  const ack = await call("markets:list", { status: "open", limit: 100 });
  if (!ack.ok) return;
  for (const market of ack.data.markets) upsertMarket(market);
}

function upsertMarket(market) {
  // Only the market:get and market:subscribe answers carry `watchers`: keep the last one known.
  const known = state.markets.get(market.id);
  if (market.watchers === undefined && known && known.watchers !== undefined) market.watchers = known.watchers;
  state.markets.set(market.id, market);
  renderMarketRow(market);
  renderBetMarkets();
  if (market.id === state.selected) renderMarketFacts();
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
    { dataset: { marketId: market.id }, className: market.id === state.selected ? "selected" : "" },
    el("td", { className: "question" }, market.question),
    el("td", {}, el("span", { className: "label" }, market.thisLabel), " ", oddsCell(market.thisOdds, previous.thisOdds)),
    el("td", {}, el("span", { className: "label" }, market.thatLabel), " ", oddsCell(market.thatOdds, previous.thatOdds)),
    el("td", { className: "market-status" }, market.status),
    el("td", { className: "watchers" }, market.watchers === undefined ? "-" : String(market.watchers)),
    el(
      "td",
      {},
      el("button", { className: "watch", textContent: "Watch", onclick: () => selectMarket(market.id) }),
      " ",
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
  if (market.id === state.selected) {
    renderMarketFacts();
    extendChart(tick);
  }
}

function onWatchers({ marketId, watchers }) {
  const market = state.markets.get(marketId);
  if (!market) return;
  market.watchers = watchers;
  renderMarketRow(market);
  if (marketId === state.selected) renderMarketFacts();
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

// The market screen: the chosen market's odds chart, its activity and its watchers.

async function selectMarket(id) {
  const before = state.selected;
  state.selected = id;
  state.chart = { interval: "1m", points: [] };
  state.activity = [];
  renderChart();
  $("activity").replaceChildren();
  setText("activity-note", "");
  for (const marketId of [before, id]) {
    if (marketId && state.markets.has(marketId)) renderMarketRow(state.markets.get(marketId));
  }
  renderMarketFacts();
  chooseMarket(id);
  // Subscribed first, so no bet or tick falls between the snapshot and the pushes.
  await subscribe([id]);
  await Promise.all([loadChart(), loadActivity()]);
}

function renderMarketFacts() {
  const market = state.markets.get(state.selected);
  if (!market) return;
  setText("market-question", market.question);
  setText("market-odds", `${market.thisLabel} ${market.thisOdds ?? "-"} · ${market.thatLabel} ${market.thatOdds ?? "-"} · ${market.status}`);
  setText("market-watchers", market.watchers === undefined ? "-" : String(market.watchers));
}

async function loadChart() {
  const marketId = state.selected;
  const payload = { marketId };
  if ($("chart-interval").value) payload.interval = $("chart-interval").value;
  const ack = await call("market:history", payload);
  if (!ack.ok || marketId !== state.selected) return;
  state.chart = {
    interval: ack.data.interval,
    points: ack.data.points.map((point) => ({ ...point, t: Date.parse(point.t) })),
  };
  renderChart();
}

// An odds tick moves the candle it falls in, or opens the next one at the last close.
function extendChart({ thisOdds, at }) {
  if (thisOdds === null) return;
  const step = INTERVAL_MS[state.chart.interval];
  const t = Math.floor(Date.parse(at) / step) * step;
  const points = state.chart.points;
  const last = points.at(-1);
  if (last && last.t === t) {
    last.close = thisOdds;
    last.high = Math.max(last.high, thisOdds);
    last.low = Math.min(last.low, thisOdds);
  } else if (!last || last.t < t) {
    const open = last ? last.close : thisOdds;
    points.push({ t, open, high: Math.max(open, thisOdds), low: Math.min(open, thisOdds), close: thisOdds });
  }
  renderChart();
}

const CHART = { width: 600, height: 220, left: 46, right: 12, top: 12, bottom: 24, maxDots: 200 };

function timeLabel(ms) {
  const iso = new Date(ms).toISOString();
  return state.chart.interval === "1d" ? iso.slice(0, 10) : iso.slice(11, 16);
}

function renderChart() {
  const chart = $("chart");
  const { points, interval } = state.chart;
  chart.dataset.points = String(points.length);
  chart.dataset.last = points.length ? String(points.at(-1).close) : "";
  if (points.length === 0) {
    const message = state.selected ? "no odds recorded yet" : "choose a market";
    chart.replaceChildren(svg("text", { class: "empty", x: CHART.width / 2, y: CHART.height / 2, "text-anchor": "middle" }, message));
    return;
  }
  const step = INTERVAL_MS[interval];
  const first = points[0].t;
  const end = points.at(-1).t + step;
  let low = Math.min(...points.map((point) => point.low));
  let high = Math.max(...points.map((point) => point.high));
  if (high - low < 0.02) {
    low = Math.max(0, low - 0.01);
    high = Math.min(1, high + 0.01);
  }
  const plotWidth = CHART.width - CHART.left - CHART.right;
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  const x = (t) => (CHART.left + ((t + step / 2 - first) / (end - first)) * plotWidth).toFixed(1);
  const y = (odds) => (CHART.top + ((high - odds) / (high - low)) * plotHeight).toFixed(1);
  const bottom = CHART.height - CHART.bottom;
  const nodes = [
    svg("line", { class: "grid", x1: CHART.left, x2: CHART.width - CHART.right, y1: CHART.top, y2: CHART.top }),
    svg("line", { class: "grid", x1: CHART.left, x2: CHART.width - CHART.right, y1: bottom, y2: bottom }),
    svg("text", { class: "axis", x: CHART.left - 4, y: CHART.top + 4, "text-anchor": "end" }, high.toFixed(3)),
    svg("text", { class: "axis", x: CHART.left - 4, y: bottom + 4, "text-anchor": "end" }, low.toFixed(3)),
    svg("text", { class: "axis", x: CHART.left, y: CHART.height - 6 }, timeLabel(first)),
    svg("text", { class: "axis", x: CHART.width - CHART.right, y: CHART.height - 6, "text-anchor": "end" }, `${timeLabel(points.at(-1).t)} UTC`),
  ];
  for (const point of points) {
    nodes.push(svg("line", { class: "wick", x1: x(point.t), x2: x(point.t), y1: y(point.high), y2: y(point.low) }));
  }
  nodes.push(svg("polyline", { class: "close", points: points.map((point) => `${x(point.t)},${y(point.close)}`).join(" ") }));
  for (const point of points.slice(-CHART.maxDots)) {
    nodes.push(svg("circle", { class: "point", cx: x(point.t), cy: y(point.close), r: 3 }, svg("title", {}, `${new Date(point.t).toISOString()} close ${point.close}`)));
  }
  chart.replaceChildren(...nodes);
}

async function loadActivity() {
  const marketId = state.selected;
  const ack = await call("market:activity", { marketId, limit: ACTIVITY_ROWS });
  if (!ack.ok || marketId !== state.selected) return;
  showActivity(ack.data.bets, { fresh: false });
}

function activityKey(bet) {
  return `${bet.at}|${bet.username}|${bet.side}|${bet.amount}|${bet.odds}`;
}

// A page and a push may both carry a bet placed between them: a bet already listed is listed
// once, counting alike bets (one player's equal bets in one batch) as many as they are.
function showActivity(bets, { fresh = true, omitted = 0 } = {}) {
  const listed = new Map();
  for (const bet of state.activity) listed.set(activityKey(bet), (listed.get(activityKey(bet)) || 0) + 1);
  const added = [];
  for (const bet of bets) {
    const key = activityKey(bet);
    if (listed.get(key) > 0) listed.set(key, listed.get(key) - 1);
    else added.push(bet);
  }
  // Times are ISO strings of one format: they order as text, newest first.
  state.activity = [...added, ...state.activity]
    .sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0))
    .slice(0, ACTIVITY_ROWS);
  if (omitted > 0) setText("activity-note", `(${omitted} older bets of one batch not shown)`);
  const newRows = new Set(fresh ? added : []);
  $("activity").replaceChildren(
    ...state.activity.map((bet) =>
      el(
        "tr",
        { className: newRows.has(bet) ? "fresh" : "" },
        el("td", { className: "at" }, bet.at.slice(11, 19)),
        el("td", { className: "who" }, bet.username),
        el("td", { className: "side" }, bet.side),
        el("td", { className: "amount" }, String(bet.amount)),
        el("td", { className: "odds" }, String(bet.odds)),
      ),
    ),
  );
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
  showBalance(ack.data);
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
  const [top] = await Promise.all([call("leaderboard:get", { period, limit: 20 }), loadBoardAroundMe()]);
  if (top.ok) showLeaderboard(top.data.entries);
}

function boardRows(entries) {
  return entries.map((entry) =>
    el(
      "li",
      { value: entry.rank, className: entry.userId === state.userId ? "me" : "" },
      `${entry.username} `,
      el("strong", {}, String(entry.pnl)),
    ),
  );
}

function showLeaderboard(entries) {
  $("leaderboard").replaceChildren(...boardRows(entries));
}

async function loadBoardAroundMe() {
  const period = state.period;
  const ack = await call("leaderboard:get", { period, around: "me", limit: BOARD_AROUND_ME });
  if (!ack.ok || period !== state.period) return;
  const { me, total, entries } = ack.data;
  setText("my-rank", me ? `#${me.rank} of ${total} · pnl ${me.pnl}` : "not ranked yet");
  $("board-around-me").replaceChildren(...boardRows(entries));
}

// Pushes come up to once a second per period: one ask now, and one after the burst.
function refreshBoardAroundMe() {
  if (state.boardTimer) {
    state.boardAgain = true;
    return;
  }
  loadBoardAroundMe();
  state.boardTimer = setTimeout(() => {
    state.boardTimer = null;
    if (state.boardAgain) {
      state.boardAgain = false;
      refreshBoardAroundMe();
    }
  }, BOARD_REFRESH_MS);
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
$("anonymous").addEventListener("change", setAnonymous);
$("chart-interval").addEventListener("change", () => state.selected && loadChart());
$("raw-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sendRaw();
});
renderChart();
