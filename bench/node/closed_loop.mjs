// Closed-loop load from the official socket.io-client, as real players run it: websocket
// transport, permessage-deflate offered (the client's default), one ack awaited per emit.
//
// node closed_loop.mjs <config.json>
// config: {url, tokens: [..], sockets, inFlight, warmupS, durationS, event, amount, noDeflate,
//          mode: "closed" | "open", rate, markets?}
// With `markets` (one list of market ids per socket), socket i subscribes to markets[i]
// (`market:subscribe`) and bets over them in turn; without it every bet goes to the first
// open market.
// Open loop sends `rate` events a second whatever the answers, and times each from the moment
// it was due, so a slow server cannot hide its queue (coordinated omission).
// Prints "CONNECTED" once every socket is connected (and subscribed), "START" when the measured
// window opens and "STOP" when it closes (the bench samples
// process CPU at those lines), then one JSON line with the client's figures.
import { readFileSync } from "node:fs";
import { io } from "socket.io-client";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const sockets = [];
let market = null;
const marketsOf = new Map();
let measuring = false;
let stopped = false;
let ok = 0;
let refused = 0;
let timeouts = 0;
const codes = {};
const latencies = [];
const refusalLatencies = [];
let sequence = 0;
let outstanding = 0;

function connect(token) {
  return new Promise((resolve, reject) => {
    const socket = io(config.url, {
      transports: ["websocket"],
      auth: { token },
      reconnection: false,
      timeout: 20000,
      perMessageDeflate: config.noDeflate ? false : { threshold: 1024 },
    });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

function payload(socket) {
  sequence += 1;
  if (config.event === "bet:place") {
    const own = marketsOf.get(socket);
    return {
      marketId: own ? own[sequence % own.length] : market,
      side: sequence % 2 ? "this" : "that",
      amount: config.amount,
      clientBetId: `n${process.pid}-${sequence}`,
    };
  }
  return {};
}

async function loop(socket) {
  while (!stopped) {
    const sent = performance.now();
    try {
      const answer = await socket.timeout(10000).emitWithAck(config.event, payload(socket));
      if (!measuring) continue;
      latencies.push(performance.now() - sent);
      if (answer && answer.ok) ok += 1;
      else {
        refused += 1;
        const code = answer?.error?.code ?? "UNKNOWN";
        codes[code] = (codes[code] ?? 0) + 1;
      }
    } catch {
      if (measuring) timeouts += 1;
    }
  }
}

async function openLoop(deadline) {
  const interval = 1000 / config.rate;
  const start = performance.now();
  let sent = 0;
  let next = 0;
  while (performance.now() < deadline) {
    const due = start + sent * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    const socket = sockets[next];
    next = (next + 1) % sockets.length;
    sent += 1;
    const scheduled = due;
    // Counted when sent in the measured window, however late its answer comes.
    const counted = measuring;
    outstanding += 1;
    socket
      .timeout(10000)
      .emitWithAck(config.event, payload(socket))
      .finally(() => {
        outstanding -= 1;
      })
      .then((answer) => {
        if (!counted) return;
        const took = performance.now() - scheduled;
        if (answer && answer.ok) {
          ok += 1;
          latencies.push(took);
        } else {
          refused += 1;
          refusalLatencies.push(took);
          const code = answer?.error?.code ?? "UNKNOWN";
          codes[code] = (codes[code] ?? 0) + 1;
        }
      })
      .catch(() => {
        if (counted) timeouts += 1;
      });
  }
}

async function settled(limitMs) {
  const until = performance.now() + limitMs;
  while (outstanding > 0 && performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] * 100) / 100;
}

const tokens = config.tokens.slice(0, config.sockets);
for (let i = 0; i < tokens.length; i += 50) {
  sockets.push(...(await Promise.all(tokens.slice(i, i + 50).map(connect))));
}
const listed = await sockets[0].timeout(10000).emitWithAck("markets:list", { status: "open", limit: 1 });
market = listed?.data?.markets?.[0]?.id;
if (config.markets) {
  for (let i = 0; i < sockets.length; i += 1) {
    const chosen = config.markets[i % config.markets.length];
    const answer = await sockets[i]
      .timeout(10000)
      .emitWithAck("market:subscribe", { marketIds: chosen });
    if (!answer?.ok) throw new Error(`market:subscribe refused: ${JSON.stringify(answer)}`);
    marketsOf.set(sockets[i], chosen);
  }
}
console.log("CONNECTED");
const loops = [];
if (config.mode === "open") {
  loops.push(openLoop(performance.now() + (config.warmupS + config.durationS) * 1000));
} else {
  for (const socket of sockets) {
    for (let n = 0; n < config.inFlight; n += 1) loops.push(loop(socket));
  }
}
await new Promise((resolve) => setTimeout(resolve, config.warmupS * 1000));
const cpuStart = process.cpuUsage();
const wallStart = performance.now();
measuring = true;
console.log("START");
await new Promise((resolve) => setTimeout(resolve, config.durationS * 1000));
measuring = false;
const cpu = process.cpuUsage(cpuStart);
const wall = (performance.now() - wallStart) / 1000;
console.log("STOP");
stopped = true;
await Promise.race([Promise.all(loops), new Promise((resolve) => setTimeout(resolve, 11000))]);
await settled(11000);
for (const socket of sockets) socket.disconnect();
latencies.sort((a, b) => a - b);
refusalLatencies.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    sockets: sockets.length,
    seconds: Math.round(wall * 100) / 100,
    ok,
    refused,
    timeouts,
    codes,
    okRate: Math.round((ok / wall) * 10) / 10,
    latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) },
    refusalLatencyMs: {
      p50: percentile(refusalLatencies, 0.5),
      p99: percentile(refusalLatencies, 0.99),
    },
    clientCpuS: (cpu.user + cpu.system) / 1e6,
  }),
);
process.exit(0);
