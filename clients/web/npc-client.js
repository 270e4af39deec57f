// SPDX-License-Identifier: MIT
// npc_runtime protocol v1 for the browser: a checked event parser (no I/O) and a WebSocket client.
//
//   import { NpcClient } from "./npc-client.js";
//   const client = new NpcClient("ws://127.0.0.1:8765");
//   client.addEventListener("event", (e) => console.log(e.detail));            // every parsed server event
//   client.addEventListener("audio", (e) => play(e.detail.event, e.detail.pcm)); // response.audio + its PCM16
//   const ready = await client.start({ character: "jin", scene, player: { id: "player", name: "Kai" } });
//   client.sendText("Could you hand me the chopsticks?");
//
// The protocol is documented in docs/protocol.md; its JSON Schema is clients/protocol.schema.json.

export const PROTOCOL = "1";
export const VISEMES = ["sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou"];
export const VERBS = ["move", "grab", "give"];
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

const cue = (v) => obj(v) && VISEMES.includes(v.viseme) && num(v.start_ms) && num(v.end_ms) && v.end_ms >= v.start_ms;
const audioFormat = (v) => obj(v) && v.encoding === "pcm_s16le" && int(v.sample_rate) && v.sample_rate > 0 && v.channels === 1;

/** Required fields (and their checks) of each server event type. */
const EVENT_FIELDS = {
  "session.ready": {
    session_id: str, protocol: (v) => v === PROTOCOL, character: (v) => obj(v) && str(v.id),
    actions: (v) => arr(v) && v.every(str), audio: nullable(audioFormat), audio_in: nullable(audioFormat),
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
    response_id: str, index: int, verb: oneOf(VERBS), object: nullable(str), target: nullable(str),
    text_offset: int, at_ms: nullable(num),
  },
  "response.emotion": { response_id: str, emotion: oneOf(EMOTIONS), text_offset: int, at_ms: nullable(num) },
  "response.end": {
    response_id: str, status: oneOf(["completed", "interrupted", "failed"]), text: str,
    actions: (v) => arr(v) && v.every((a) => obj(a) && VERBS.includes(a.verb)), timings: numMap,
    audio_ms: nullable(num), error: nullable(str),
  },
  "scene.converse.end": { turns: int, status: oneOf(["completed", "interrupted", "failed"]) },
  "scene.updated": { objects: int, locations: int, characters: int },
  "game.event.accepted": { reacting: bool },
  error: { code: str, message: str, retryable: bool, fatal: bool },
  pong: {},
};

/**
 * Parses one text frame from the server into a checked event object.
 * Throws ProtocolError when it is not JSON, has an unknown `type`, or lacks (or mistypes) a required field.
 * Fields the schema adds later are kept (forward compatible); the ones checked here must be right.
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

  /** Opens the socket and sends session.start; resolves with the session.ready event (rejects on an error event). */
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
