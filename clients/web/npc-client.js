// SPDX-License-Identifier: MIT
// npc_runtime protocol v1 for the browser: a checked event parser (no I/O) and a WebSocket client.
//
//   import { NpcClient } from "./npc-client.js";
//   const client = new NpcClient("ws://127.0.0.1:8765");
//   client.addEventListener("event", (e) => console.log(e.detail));            // every parsed server event
//   client.addEventListener("audio", (e) => play(e.detail.event, e.detail.pcm)); // response.audio + its PCM16
//   client.addEventListener("action", (e) => act(e.detail.verb, e.detail.args)); // any verb, its args by name
//   const ready = await client.start({ character: "jin", scene, player: { id: "player", name: "Kai" } });
//   client.sendText("Could you hand me the chopsticks?");
//
// Verbs are data: besides the built-in move, grab and give, a scene may declare the game's own verbs
// (scene.verbs: [{name: "sit", description: "sits down on a seat", args: [{name: "seat", type: "object"}]}]);
// every response.action carries its verb and `args` (every argument by name), whatever the verb.
//
// The protocol is documented in docs/protocol.md; its JSON Schema is clients/protocol.schema.json.

export const PROTOCOL = "1";
export const VISEMES = ["sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou"];
/** The built-in verbs and their arguments, in order (a scene declares its own verbs in scene.verbs). */
export const BUILTIN_VERBS = { move: ["target"], grab: ["object"], give: ["object", "target"] };
/** Verb, argument and value names: lowercase words joined by "_", at most 32 characters. */
export const VERB_NAME = /^[a-z][a-z0-9_]{0,31}$/;
/** The argument names of a built-in verb, or null for any other verb. */
export const builtinArgs = (verb) => (Object.hasOwn(BUILTIN_VERBS, verb) ? BUILTIN_VERBS[verb] : null);
export const EMOTIONS = ["neutral", "joy", "anger", "sadness", "fear", "surprise", "disgust"];

/** A server message that does not follow protocol v1 (wrong type, missing or mistyped field). */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

// Field checkers: each returns the value or throws ProtocolError naming the event and field.
const str = (v) => typeof v === "string";
const num = (v) => typeof v === "number" && Number.isFinite(v);
const int = (v) => Number.isInteger(v);
const bool = (v) => typeof v === "boolean";
const obj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const arr = (v) => Array.isArray(v);
const nullable = (check) => (v) => v === null || v === undefined || check(v);
const oneOf = (values) => (v) => values.includes(v);
const numMap = (v) => obj(v) && Object.values(v).every(num);
const verbName = (v) => str(v) && VERB_NAME.test(v);
const argMap = (v) => obj(v) && Object.values(v).every(str);
const actionEntry = (v) => obj(v) && verbName(v.verb) && nullable(argMap)(v.args) && nullable(str)(v.object) && nullable(str)(v.target);

const cue = (v) => obj(v) && VISEMES.includes(v.viseme) && num(v.start_ms) && num(v.end_ms) && v.end_ms >= v.start_ms;
const audioFormat = (v) => obj(v) && v.encoding === "pcm_s16le" && int(v.sample_rate) && v.sample_rate > 0 && v.channels === 1;

/** Required fields (and their checks) of each server event type. */
const EVENT_FIELDS = {
  "session.ready": {
    session_id: str, protocol: (v) => v === PROTOCOL, character: (v) => obj(v) && str(v.id),
    actions: (v) => arr(v) && v.every(verbName), audio: nullable(audioFormat), audio_in: nullable(audioFormat),
    listen: nullable(obj), mood: str,
  },
  "speech.started": { utterance_id: str, at_ms: num },
  "transcript.partial": { utterance_id: str, text: str, stable: str },
  "speech.stopped": { utterance_id: str, at_ms: num, duration_ms: num, discarded: bool },
  "transcript.final": { utterance_id: str, text: str, backchannel: bool, timings: numMap },
  "response.interrupted": { response_id: str, reason: str },
  "response.start": { response_id: str, trigger: oneOf(["text", "voice", "game_event", "converse"]) },
  "response.text.delta": { response_id: str, text: str },
  "response.audio": {
    response_id: str, seq: int, start_ms: num, samples: (v) => int(v) && v > 0,
    sample_rate: nullable((v) => int(v) && v > 0), visemes: (v) => arr(v) && v.every(cue),
  },
  "response.action": {
    response_id: str, index: int, verb: verbName, args: nullable(argMap), object: nullable(str), target: nullable(str),
    text_offset: int, at_ms: nullable(num),
  },
  "response.emotion": { response_id: str, emotion: oneOf(EMOTIONS), text_offset: int, at_ms: nullable(num) },
  "response.end": {
    response_id: str, status: oneOf(["completed", "interrupted", "failed"]), text: str,
    actions: (v) => arr(v) && v.every(actionEntry), timings: numMap,
    audio_ms: nullable(num), error: nullable(str),
  },
  "scene.converse.end": { turns: int, status: oneOf(["completed", "interrupted", "failed"]) },
  "scene.updated": { objects: int, locations: int, characters: int },
  "game.event.accepted": { reacting: bool },
  error: { code: str, message: str, retryable: bool, fatal: bool },
  pong: {},
};

/**
 * An action (a `response.action` event or an entry of `response.end.actions`) with its `args`: every argument by
 * name. A server from before verbs were data sends no `args`: a built-in's come from its `object`/`target`; and
 * `object`/`target` are the arguments of those names when the fields are absent. Throws ProtocolError when a built-in
 * lacks one of its arguments. Changes `a` in place and returns it.
 */
export function withArgs(a, where = "action") {
  if (!obj(a.args)) {
    a.args = {};
    for (const name of builtinArgs(a.verb) || []) if (str(a[name])) a.args[name] = a[name];
  }
  for (const name of ["object", "target"]) if (!str(a[name])) a[name] = str(a.args[name]) ? a.args[name] : null;
  for (const name of builtinArgs(a.verb) || []) {
    if (!str(a.args[name])) throw new ProtocolError(`${where}: ${a.verb} without its ${name}`);
  }
  return a;
}

/**
 * What the server would refuse in a scene's `verbs` (null when none): names not matching VERB_NAME, a built-in (or
 * `emotion`) redeclared, a verb declared twice, a description not of 1–120 characters, more than 4 arguments, an
 * argument with neither or both of `type` (object, location, character, any) and `values`, more than 32 verbs.
 */
export function verbsProblem(verbs = []) {
  if (!arr(verbs)) return "scene.verbs: not a list";
  if (verbs.length > 32) return "scene.verbs: more than 32 verbs";
  const seen = new Set();
  for (const v of verbs) {
    const where = `scene.verbs ${JSON.stringify(v?.name)}`;
    if (!obj(v) || !verbName(v.name)) return `${where}: the name must match ${VERB_NAME}`;
    if (builtinArgs(v.name) || v.name === "emotion") return `${where}: built in; declare only new verbs`;
    if (seen.has(v.name)) return `${where}: declared twice`;
    seen.add(v.name);
    if (!str(v.description) || v.description.length < 1 || v.description.length > 120) return `${where}: a description of 1 to 120 characters is required`;
    const args = v.args ?? [];
    if (!arr(args) || args.length > 4) return `${where}: at most 4 arguments`;
    const names = new Set();
    for (const a of args) {
      if (!obj(a) || !verbName(a.name) || names.has(a.name)) return `${where}: argument ${JSON.stringify(a?.name)} is malformed or twice`;
      names.add(a.name);
      const typed = a.type !== undefined && a.type !== null;
      const listed = a.values !== undefined && a.values !== null;
      if (typed === listed) return `${where}: argument ${a.name} needs either a type (object, location, character, any) or values`;
      if (typed && !["object", "location", "character", "any"].includes(a.type)) return `${where}: argument ${a.name}: unknown type ${JSON.stringify(a.type)}`;
      if (listed && (!arr(a.values) || a.values.length < 1 || a.values.length > 32 || !a.values.every(verbName)
                     || new Set(a.values).size !== a.values.length)) return `${where}: argument ${a.name}: 1 to 32 distinct lowercase values`;
    }
  }
  return null;
}

/**
 * Parses one text frame from the server into a checked event object.
 * Throws ProtocolError when it is not JSON, has an unknown `type`, or lacks (or mistypes) a required field.
 * Fields the schema adds later are kept (forward compatible); the ones checked here must be right.
 * Actions (`response.action`, `response.end.actions`) always come out with `args` (see withArgs).
 */
export function parseServerEvent(text) {
  let event;
  try {
    event = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(`server frame is not JSON: ${err.message}`);
  }
  if (!obj(event)) throw new ProtocolError("server frame is not a JSON object");
  const fields = EVENT_FIELDS[event.type];
  if (!fields) throw new ProtocolError(`unknown server event type ${JSON.stringify(event.type)}`);
  if (!("response_id" in event)) throw new ProtocolError(`${event.type}: missing response_id`);
  for (const [name, check] of Object.entries(fields)) {
    if (!check(event[name])) {
      throw new ProtocolError(`${event.type}: bad or missing field ${name}: ${JSON.stringify(event[name])}`);
    }
  }
  if (event.type === "response.action") withArgs(event, event.type);
  if (event.type === "response.end") event.actions.forEach((a) => withArgs(a, "response.end.actions"));
  return event;
}

/**
 * Pairs each `response.audio` event with the binary frame that follows it (sans-I/O).
 * `text(event)` before, `binary(arrayBuffer)` after; the latter returns `{event, pcm: Int16Array}`.
 */
export class AudioPairer {
  constructor() {
    this.pending = null;
  }

  text(event) {
    if (this.pending) throw new ProtocolError(`response.audio seq ${this.pending.seq} was not followed by its binary frame`);
    if (event.type === "response.audio") this.pending = event;
  }

  binary(buffer) {
    const event = this.pending;
    if (!event) throw new ProtocolError("binary frame without a response.audio event before it");
    this.pending = null;
    if (buffer.byteLength !== event.samples * 2) {
      throw new ProtocolError(`response.audio seq ${event.seq}: ${event.samples} samples announced, ${buffer.byteLength} bytes received`);
    }
    return { event, pcm: new Int16Array(buffer) };
  }
}

/**
 * One conversation over one WebSocket. Dispatches DOM events:
 *   "event"  — detail: a parsed server event (every text frame, including response.audio);
 *   "audio"  — detail: {event, pcm} a response.audio event with its PCM16 samples;
 *   "action" — detail: a response.action event, any verb: {verb, args (every argument by name), object, target,
 *              at_ms, ...}, when it arrives (perform it when the audio clock reaches at_ms; null: at once);
 *   "protocol-error" — detail: a ProtocolError (the frame is dropped, the connection stays);
 *   "close"  — detail: {code, reason}.
 * WebSocket callbacks run on the page's event loop; nothing here blocks.
 */
export class NpcClient extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.ready = null;
    this._pairer = new AudioPairer();
    this._nextId = 1;
  }

  /** Opens the socket and sends session.start; resolves with the session.ready event (rejects on an error event).
   *  `scene` may declare the game's own verbs (`scene.verbs`, see verbsProblem). */
  start({ character, scene, player = { id: "player" }, options = {} }) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      const settle = (event) => {
        if (event.type === "session.ready") {
          this.ready = event;
          resolve(event);
        } else if (event.type === "error" && !this.ready) {
          reject(new Error(`${event.code}: ${event.message}`));
        }
      };
      this.addEventListener("event", (e) => settle(e.detail));
      ws.onopen = () => this._send({ type: "session.start", character, player, scene, options });
      ws.onmessage = (msg) => this._onFrame(msg.data);
      ws.onerror = () => { if (!this.ready) reject(new Error(`cannot connect to ${this.url}`)); };
      ws.onclose = (e) => {
        if (!this.ready) reject(new Error(`connection closed (${e.code}) before session.ready`));
        this.dispatchEvent(new CustomEvent("close", { detail: { code: e.code, reason: e.reason } }));
      };
    });
  }

  /** The player says something (interrupts a response in progress). Returns the message id. */
  sendText(text, to = undefined) {
    return this._send({ type: "input.text", text, ...(to ? { to } : {}) });
  }

  /** One microphone frame: PCM16 mono at the rate declared in session.start (options.audio_in). */
  sendAudio(pcm16) {
    if (this._open()) this.ws.send(pcm16.buffer.byteLength === pcm16.byteLength ? pcm16.buffer : pcm16.slice().buffer);
  }

  /** Ends the player's turn now (push-to-talk released). */
  commit() { return this._send({ type: "input.audio.commit" }); }

  /** Drops the utterance in progress. */
  clearAudio() { return this._send({ type: "input.audio.clear" }); }

  /** How much of a response's audio the player has heard (ms on its audio timeline). */
  mark(responseId, playedMs) {
    return this._send({ type: "playback.mark", response_id: responseId, played_ms: Math.max(0, playedMs) });
  }

  /** Stops the current response. */
  cancel() { return this._send({ type: "response.cancel" }); }

  close() { this.ws?.close(1000, "bye"); }

  _open() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  _send(message) {
    if (!this._open()) return null;
    const id = `w${this._nextId++}`;
    this.ws.send(JSON.stringify({ ...message, id }));
    return id;
  }

  _onFrame(data) {
    try {
      if (typeof data === "string") {
        const event = parseServerEvent(data);
        this._pairer.text(event);
        this.dispatchEvent(new CustomEvent("event", { detail: event }));
        if (event.type === "response.action") this.dispatchEvent(new CustomEvent("action", { detail: event }));
      } else {
        this.dispatchEvent(new CustomEvent("audio", { detail: this._pairer.binary(data) }));
      }
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this._pairer = new AudioPairer();
      this.dispatchEvent(new CustomEvent("protocol-error", { detail: err }));
    }
  }
}
