// A minimal broadcast server on Node's `ws` library — a peer for the fan-out benchmark.
// Same protocol subset as websockets_broadcast.py: subscribe {channel}, publish {channel,
// data, ref} -> ack; each publish is encoded once and sent to the channel's subscribers.
//   node benchmarks/peers/node_ws_broadcast.mjs 8802
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] || 8802);
const channels = new Map();
let seq = 0;
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false, path: "/ws" });
wss.on("connection", (ws) => {
  const mine = new Set();
  ws.on("message", (raw) => {
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    if (msg.type === "subscribe") {
      if (!channels.has(msg.channel)) channels.set(msg.channel, new Set());
      channels.get(msg.channel).add(ws);
      mine.add(msg.channel);
    } else if (msg.type === "publish") {
      seq += 1;
      const frame = JSON.stringify({ type: "message", channel: msg.channel, id: String(seq),
                                     data: msg.data, ts: Date.now() / 1000 });
      for (const peer of channels.get(msg.channel) || []) peer.send(frame);
      if (msg.ref !== undefined) ws.send(JSON.stringify({ type: "ack", ref: msg.ref, id: String(seq) }));
    }
  });
  ws.on("close", () => { for (const c of mine) channels.get(c)?.delete(ws); });
});
wss.on("listening", () => console.log(`node ws broadcast server on ws://127.0.0.1:${port}/ws`));
