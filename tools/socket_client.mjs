// The official socket.io-client, driven line by line from a test: each stdin line is a command
// (JSON), each stdout line something that happened (JSON). Reconnection is the test's to decide.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const say = (value) => process.stdout.write(JSON.stringify(value) + "\n");
let socket = null;

function connect({ url, auth, transports }) {
  socket = io(url, {
    auth,
    transports: transports ?? ["websocket"],
    reconnection: false,
    forceNew: true,
  });
  socket.on("connect", () => say({ type: "connect", id: socket.id, recovered: socket.recovered === true }));
  socket.on("connect_error", (error) =>
    say({ type: "connect_error", message: error.message, data: error.data ?? null }),
  );
  socket.on("disconnect", (reason) => say({ type: "disconnect", reason }));
  socket.onAny((event, ...args) => say({ type: "event", event, args }));
}

const commands = {
  connect,
  emit({ event, data, id }) {
    socket.timeout(10000).emit(event, data, (error, answer) =>
      say({ type: "ack", id, error: error ? String(error) : null, answer }),
    );
  },
  // The network goes away under the client: the transport closes, the socket keeps its session.
  drop() {
    socket.io.engine.close();
  },
  // Come back, to the same server or (`url`) another one, with the auth the client keeps.
  reconnect({ url }) {
    if (url) socket.io.uri = url;
    socket.connect();
  },
  close() {
    socket?.disconnect();
    process.exit(0);
  },
};

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  try {
    commands[command.cmd](command);
  } catch (error) {
    say({ type: "error", message: String(error) });
  }
});
