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

async function refresh() {
  const response = await fetch("/admin/state", { headers: { Authorization: `Bearer ${token}` } });
  const body = await response.json();
  if (!response.ok) {
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
  $("feed").textContent = JSON.stringify(body.feed, null, 2);
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
