// TEST ONLY (tests/test_realtime.py): the npm `openai` package's realtime WebSocket client, OpenAIRealtimeWS
// (openai/realtime/ws, on the `ws` package), holds one turn with Jin through /v1/realtime.
// The SDK always dials wss://, so this script puts a TLS-terminating proxy (what docs/security.md asks for in front of
// `npc serve`) on a free port, forwarding to the plain server at 127.0.0.1:<port>; the SDK trusts its self-signed cert.
// Usage: node realtime_client.mjs <server port> <cert.pem> <key.pem> <scene.json>
// Prints one JSON line: what happened (event types, transcript, function calls, errors).
import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import OpenAI from "openai";
import { OpenAIRealtimeWS } from "openai/realtime/ws";

const [port, certFile, keyFile, sceneFile] = process.argv.slice(2);
const cert = fs.readFileSync(certFile), key = fs.readFileSync(keyFile);
const scene = JSON.parse(fs.readFileSync(sceneFile, "utf8"));

const proxy = tls.createServer({ cert, key }, (secure) => {
  const plain = net.connect(Number(port), "127.0.0.1");
  secure.pipe(plain).pipe(secure);
  const close = () => { secure.destroy(); plain.destroy(); };
  secure.on("error", close); plain.on("error", close);
});
await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
const tlsPort = proxy.address().port;

const client = new OpenAI({ apiKey: "sk-node-test-key", baseURL: `https://localhost:${tlsPort}/v1` });
const rt = new OpenAIRealtimeWS({ model: "jin", options: { ca: cert } }, client);
const seen = [], calls = [], errors = [];
let transcript = "", audioBytes = 0, phase = "text";
const finish = (code) => { console.log(JSON.stringify({ seen, transcript, audioBytes, calls, errors })); rt.close(); proxy.close(); process.exit(code); };
const timer = setTimeout(() => { errors.push({ code: "timeout" }); finish(1); }, 60000);

rt.on("error", (err) => { errors.push({ code: err?.error?.code ?? "sdk", message: String(err?.message ?? err) }); if (phase === "bad") { phase = "again"; say(); } });
rt.on("event", (event) => { seen.push(event.type); });
rt.on("session.updated", () => { if (phase === "text") say(); });
rt.on("response.output_audio_transcript.delta", (e) => { if (phase === "text") transcript += e.delta; });
rt.on("response.output_audio.delta", (e) => { audioBytes += Buffer.from(e.delta, "base64").length; });
rt.on("response.function_call_arguments.done", (e) => { calls.push({ name: e.name, arguments: JSON.parse(e.arguments) }); });
rt.on("response.done", () => {
  if (phase === "text") { phase = "bad"; rt.send({ type: "no.such.event", event_id: "evt_node_bad" }); }
  else if (phase === "again") { clearTimeout(timer); finish(0); }
});
rt.socket.on("open", () => {
  rt.send({ type: "session.update", session: { type: "realtime", npc: { scene, player: { name: "Kai" } } } });
});
function say() {
  rt.send({ type: "conversation.item.create", item: { type: "message", role: "user",
    content: [{ type: "input_text", text: "Could I have the chopsticks?" }] } });
  rt.send({ type: "response.create" });
}
