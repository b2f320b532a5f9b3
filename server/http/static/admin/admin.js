// The admin page: reads /admin/state with the token typed here and renders it as text only.
"use strict";

const $ = (id) => document.getElementById(id);
let token = null;
let timer = null;

function row(...cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = cell === null || cell === undefined ? "-" : String(cell);
    tr.append(td);
  }
  return tr;
}

function fill(id, rows) {
  $(id).replaceChildren(...rows);
}

// What a refused token may not go on showing: everything the last good answer filled.
function clear() {
  for (const id of ["node", "at", "audit", "feed-summary"]) $(id).textContent = "-";
  for (const id of ["audit-violations", "nodes", "rooms", "feed-jobs", "settlements", "sockets"]) fill(id, []);
}

function detail(value) {
  if (value === null || value === undefined) return "-";
  return Object.entries(value)
    .map(([key, item]) => `${key}: ${typeof item === "object" && item !== null ? JSON.stringify(item) : item}`)
    .join(", ");
}

async function refresh() {
  const response = await fetch("/admin/state", { headers: { Authorization: `Bearer ${token}` } });
  const body = await response.json();
  if (!response.ok) {
    clear();
    clearInterval(timer);
    $("error").textContent = `${body.error.code}: ${body.error.message}`;
    $("status").textContent = "refused";
    return;
  }
  $("error").textContent = "";
  $("status").textContent = "live";
  $("node").textContent = body.node;
  $("at").textContent = body.at;
  const audit = body.audit;
  $("audit").textContent = `${audit.passed ? "passed" : "FAILED"} at ${audit.at} (${audit.violations} violation(s))`;
  fill("audit-violations", audit.first.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  fill("nodes", body.nodes.map((n) => row(n.id, n.sockets, n.users, n.startedAt, n.seenAt)));
  fill("rooms", body.rooms.map((r) => row(r.room, r.size)));
  const feed = body.feed;
  $("feed-summary").textContent =
    `mode ${feed.mode}, ${feed.openMarkets} open market(s), ${feed.staleOdds} with stale odds` +
    (feed.error ? ` (${feed.error})` : "");
  fill("feed-jobs", Object.entries(feed.jobs || {}).map(([name, job]) =>
    row(name, job.state, job.lastSuccessAt, job.consecutiveFailures, job.lastError, detail(job.detail || job.last))));
  fill("settlements", body.settlements.map((s) => row(s.question, s.status, s.resolvedSide, s.bets, s.staked, s.paid, s.settledAt)));
  fill("sockets", body.sockets.map((s) => row(s.sid, s.username, s.rooms.join(" "), s.expiresAt)));
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value;
  clearInterval(timer);
  refresh();
  timer = setInterval(refresh, 5000);
});
