// A stock Yjs client against rtsim's /yjs/{room}: connect, optionally insert text,
// wait until the shared text contains every expected string, print the final state as JSON.
// usage: node yjs_client.mjs SERVER_URL ROOM [--insert TEXT] [--expect TEXT ...] [--timeout MS]
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import WebSocket from "ws";

const [serverUrl, room, ...rest] = process.argv.slice(2);
const inserts = [];
const expects = [];
let timeoutMs = 15000;
let awarenessName = null;
for (let i = 0; i < rest.length; i += 2) {
  if (rest[i] === "--insert") inserts.push(rest[i + 1]);
  else if (rest[i] === "--expect") expects.push(rest[i + 1]);
  else if (rest[i] === "--timeout") timeoutMs = Number(rest[i + 1]);
  else if (rest[i] === "--name") awarenessName = rest[i + 1];
}

const doc = new Y.Doc();
const text = doc.getText("text");
const provider = new WebsocketProvider(serverUrl, room, doc, { WebSocketPolyfill: WebSocket });
if (awarenessName) provider.awareness.setLocalStateField("user", { name: awarenessName });

const done = (ok, why) => {
  const peers = [...provider.awareness.getStates().values()]
    .map((s) => s.user && s.user.name)
    .filter(Boolean);
  console.log(JSON.stringify({ ok, why, text: text.toString(), peers, clientID: doc.clientID }));
  provider.destroy();
  process.exit(ok ? 0 : 1);
};

const timer = setTimeout(() => done(false, "timeout"), timeoutMs);
const check = () => {
  if (expects.every((e) => text.toString().includes(e))) {
    clearTimeout(timer);
    // give the last update a moment to leave before closing
    setTimeout(() => done(true, "all expected text present"), 200);
  }
};
provider.on("sync", (synced) => {
  if (!synced) return;
  for (const s of inserts) text.insert(text.length, s);
  check();
});
text.observe(check);
