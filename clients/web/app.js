// SPDX-License-Identifier: MIT
// The browser demo: pick a character, hold to talk or type, hear the reply, watch the face and the scene.
// URL parameters: ?character=jin|nova  &seed=N (repeatable replies)  &player=<id> (memory key)
//                 &name=<player name>  &server=ws://host:port (default: the server that serves this page)
//                 &access_token=<player token> (a server with auth on: passed on to the WebSocket URL)

import { NpcClient, verbsProblem } from "./npc-client.js";
import { Microphone, Player } from "./audio.js";
import { Face, targetViseme } from "./face.js";
import { SceneView } from "./scene-view.js";

const params = new URLSearchParams(location.search);
const $ = (sel) => document.querySelector(sel);
// Stages of response.end.timings (ms from the turn's start), shown sorted by time; other keys are counts or flags.
const STAGES = ["transcript_final", "prompt_ready", "first_token", "first_text", "first_action", "first_clause",
  "first_audio", "first_speech", "end"];
const MARK_EVERY_MS = 250;

/** Test and debugging hook: counters and logs of what the demo did (read-only for the page's code). */
const demo = {
  state: { connected: false, playing: false, holding: false, micOpen: false, responseId: null },
  counters: {
    audioBytes: 0, audioChunks: 0, micFrames: 0, micMs: 0, visemesApplied: 0, mouthShapeChanges: 0,
    actionsShown: 0, marksSent: 0, responsesEnded: 0, protocolErrors: 0,
  },
  ready: null, audioMs: {}, visemes: [], actions: [], transcripts: [], interruptions: [], lastTimings: null, lastEnd: null,
  lastTranscriptTimings: null, lastMark: null, micPeak: 0, log: [] /* event types, first 500 */, errors: [], currentViseme: "sil", mouth: null, clockMs: 0,
};
window.npcDemo = demo;

let characters = [];
let ctx = null; // AudioContext, made on the first click (browsers start audio only after a user gesture)
let client = null;
let player = null;
let face = null;
let scene = null;
let mic = null;
let micOpening = null;
let cues = []; // viseme cues of the response playing, sorted
let pending = []; // actions/emotions of the response playing, waiting for their at_ms
let dropped = new Set(); // responses interrupted: their late events are ignored
let lastMark = 0;
let lastFrame = performance.now();
let lastCountedMouth = { open: 0, wide: 0.5, round: 0 };

function status(text, kind = "") {
  const el = $("#status");
  el.textContent = text;
  el.className = kind;
}

async function loadCharacters() {
  const list = await (await fetch("characters.json")).json();
  characters = list.characters;
  const select = $("#character");
  select.replaceChildren(...characters.map((c) => new Option(`${c.name} — ${c.role}`, c.id)));
  if (params.get("character")) select.value = params.get("character");
}

async function connect() {
  ctx ??= new AudioContext();
  await ctx.resume();
  client?.close();
  player?.stop();
  const chosen = characters.find((c) => c.id === $("#character").value);
  const sceneJson = await (await fetch(chosen.scene)).json();
  const badVerbs = verbsProblem(sceneJson.verbs);
  if (badVerbs) throw new Error(`${chosen.scene}: ${badVerbs}`);
  const base = params.get("server") || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
  const token = params.get("access_token");
  const url = token ? `${base}${base.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}` : base;
  const thisClient = new NpcClient(url);
  client = thisClient;
  demo.state.connected = false;
  dropped = new Set();
  cues = [];
  pending = [];
  client.addEventListener("event", (e) => onEvent(e.detail));
  client.addEventListener("audio", (e) => onAudio(e.detail.event, e.detail.pcm));
  client.addEventListener("protocol-error", (e) => {
    demo.counters.protocolErrors++;
    demo.errors.push(`protocol: ${e.detail.message}`);
    status(`protocol error: ${e.detail.message}`, "error");
  });
  client.addEventListener("close", () => {
    if (client !== thisClient) return; // an earlier connection, replaced by this one
    demo.state.connected = false;
    player?.stop();
    setControls(false);
    status("disconnected", "error");
  });
  const seed = params.get("seed");
  const options = {
    audio_in: { encoding: "pcm_s16le", sample_rate: Math.min(16000, ctx.sampleRate), channels: 1 },
    ...(seed !== null ? { seed: Number(seed) } : {}),
  };
  const playerInfo = { id: params.get("player") || "player", name: params.get("name") || "Kai" };
  status(`connecting to ${chosen.name}…`);
  const ready = await client.start({ character: chosen.id, scene: sceneJson, player: playerInfo, options });
  demo.ready = ready;
  demo.state.connected = true;
  player = new Player(ctx);
  player.onended = (responseId, playedMs) => {
    // all its audio has sounded: what sits at the very end of the speech (an action after the last words) is due now
    const due = pending.filter((p) => p.response_id === responseId);
    pending = pending.filter((p) => p.response_id !== responseId);
    due.forEach((ev) => fire(ev, demo.audioMs[responseId] ?? playedMs));
    sendMark(responseId, playedMs);
  };
  face = new Face($("#face"), ready.character.name);
  face.setEmotion(ready.mood);
  scene = new SceneView($("#scene"), sceneJson, ready.character);
  $("#transcript").replaceChildren();
  setControls(true);
  status(`talking to ${ready.character.name}${ready.audio_in ? "" : " (no speech recognition on this server: type)"}`, "ok");
}

function setControls(on) {
  for (const el of [$("#talk"), $("#text"), $("#send")]) el.disabled = !on;
  if (on && !demo.ready.audio_in) $("#talk").disabled = true;
}

// ---- server events ---------------------------------------------------------------------------------------

function onEvent(ev) {
  if (demo.log.length < 500 && ev.type !== "response.text.delta" && ev.type !== "response.audio") demo.log.push(ev.type);
  if (ev.response_id && dropped.has(ev.response_id) && ev.type !== "response.end") return;
  switch (ev.type) {
    case "transcript.partial":
      playerLine(ev.utterance_id, ev.stable, ev.text.slice(ev.stable.length));
      break;
    case "transcript.final":
      demo.lastTranscriptTimings = ev.timings;
      if (ev.text) playerLine(ev.utterance_id, ev.text, ev.backchannel ? " (over the character)" : "", true);
      else document.querySelector(`[data-line="u:${ev.utterance_id}"]`)?.remove(); // nothing intelligible
      demo.transcripts.push({ kind: "final", text: ev.text, backchannel: ev.backchannel });
      break;
    case "response.start":
      demo.state.responseId = ev.response_id;
      characterLine(ev.response_id, "");
      break;
    case "response.text.delta":
      characterLine(ev.response_id, ev.text);
      break;
    case "response.action":
    case "response.emotion":
      if (ev.at_ms === null) fire(ev); // text only: no audio clock
      else pending.push(ev);
      break;
    case "response.interrupted":
      interruptPlayback(ev.response_id);
      break;
    case "response.end":
      demo.counters.responsesEnded++;
      player?.finish(ev.response_id);
      demo.lastEnd = ev;
      demo.lastTimings = ev.timings;
      showTimings(ev);
      characterLine(ev.response_id, "", ev.status);
      break;
    case "error":
      demo.errors.push(`${ev.code}: ${ev.message}`);
      status(`${ev.code}: ${ev.message}`, "error");
      break;
    default:
      break;
  }
}

function onAudio(ev, pcm) {
  if (dropped.has(ev.response_id)) return;
  if (player.responseId !== ev.response_id) { // a new response's audio: fresh timeline
    if (player.playing) { // the previous one is cut short: say how much of it was heard
      const cut = player.stop();
      sendMark(cut.responseId, cut.playedMs);
    }
    cues = [];
    pending = pending.filter((p) => p.response_id === ev.response_id);
    lastMark = 0;
  }
  const rate = ev.sample_rate ?? demo.ready.audio.sample_rate;
  demo.counters.audioBytes += pcm.byteLength;
  demo.counters.audioChunks++;
  demo.audioMs[ev.response_id] = (demo.audioMs[ev.response_id] ?? 0) + (pcm.length / rate) * 1000;
  cues.push(...ev.visemes);
  player.enqueue(ev, pcm, rate);
}

function fire(ev, clockMs = demo.clockMs) {
  if (ev.type === "response.emotion") {
    face.setEmotion(ev.emotion);
    return;
  }
  const text = scene.describe(ev);
  demo.counters.actionsShown++;
  demo.actions.push({ verb: ev.verb, args: ev.args, object: ev.object, target: ev.target, at_ms: ev.at_ms, shown_at_ms: clockMs, text });
  scene.perform(ev);
  const li = document.createElement("li");
  li.textContent = ev.at_ms === null ? text : `${text} (at ${Math.round(ev.at_ms)} ms)`;
  $("#actions").prepend(li);
}

/** Barge-in (or a typed interruption): stop the sound now, skip what was not reached, tell the server. */
function interruptPlayback(responseId) {
  dropped.add(responseId);
  const wasPlaying = player?.responseId === responseId;
  if (wasPlaying) {
    const { playedMs } = player.stop();
    sendMark(responseId, playedMs);
    demo.interruptions.push({ response_id: responseId, played_ms: playedMs, was_playing: true });
  } else {
    demo.interruptions.push({ response_id: responseId, played_ms: null, was_playing: false });
  }
  pending = pending.filter((p) => p.response_id !== responseId);
  cues = [];
  characterLine(responseId, "", "interrupted");
}

function sendMark(responseId, playedMs) {
  if (!responseId || !client) return;
  client.mark(responseId, playedMs);
  demo.counters.marksSent++;
  demo.lastMark = { response_id: responseId, played_ms: playedMs };
}

// ---- the frame loop: audio clock → mouth, actions, marks ---------------------------------------------------

function frame(now) {
  const dt = now - lastFrame;
  lastFrame = now;
  if (player && face) {
    const playing = player.playing;
    demo.state.playing = playing;
    const clock = playing ? player.clockMs() : 0;
    demo.clockMs = clock;
    const viseme = playing ? targetViseme(cues, clock) : "sil";
    if (viseme !== demo.currentViseme) {
      demo.currentViseme = viseme;
      if (playing) {
        demo.counters.visemesApplied++;
        demo.visemes.push({ viseme, clock_ms: Math.round(clock), response_id: player.responseId });
      }
    }
    const shape = face.update(viseme, dt);
    demo.mouth = shape;
    if (Math.abs(shape.open - lastCountedMouth.open) + Math.abs(shape.wide - lastCountedMouth.wide) > 0.08) {
      demo.counters.mouthShapeChanges++;
      lastCountedMouth = shape;
    }
    if (playing) {
      const due = pending.filter((p) => p.response_id === player.responseId && p.at_ms <= clock);
      pending = pending.filter((p) => !due.includes(p));
      due.forEach((ev) => fire(ev));
      if (clock - lastMark >= MARK_EVERY_MS) {
        lastMark = clock;
        sendMark(player.responseId, clock);
      }
    }
  }
  requestAnimationFrame(frame);
}

// ---- input: hold to talk, typed text -----------------------------------------------------------------------

async function startTalking() {
  if (demo.state.holding || !client) return;
  demo.state.holding = true;
  $("#talk").classList.add("active");
  micOpening = Microphone.open(ctx, (pcm) => {
    if (!demo.state.holding) return;
    client.sendAudio(pcm);
    demo.counters.micFrames++;
    for (const x of pcm) demo.micPeak = Math.max(demo.micPeak, Math.abs(x));
    demo.counters.micMs += (pcm.length / mic.sampleRate) * 1000;
  }).then((m) => {
    mic = m;
    demo.state.micOpen = true;
    if (!demo.state.holding) stopTalking();
  }).catch((err) => {
    demo.state.holding = false;
    $("#talk").classList.remove("active");
    demo.errors.push(`microphone: ${err.message}`);
    status(`microphone: ${err.message}`, "error");
  });
}

async function stopTalking() {
  if (!demo.state.holding && !mic) return;
  demo.state.holding = false;
  $("#talk").classList.remove("active");
  await micOpening;
  if (mic) {
    mic.close();
    mic = null;
    demo.state.micOpen = false;
    client?.commit(); // push-to-talk released: end of turn now
  }
}

function sendTyped() {
  const text = $("#text").value.trim();
  if (!text || !client) return;
  if (player?.playing) interruptPlayback(player.responseId); // typing over the character interrupts it
  client.sendText(text);
  typedLine(text);
  $("#text").value = "";
}

// ---- panels ------------------------------------------------------------------------------------------------

function line(key, who, cls) {
  let el = document.querySelector(`[data-line="${CSS.escape(key)}"]`);
  if (!el) {
    el = document.createElement("div");
    el.dataset.line = key;
    el.className = `line ${cls}`;
    el.innerHTML = `<b></b> <span class="stable"></span><span class="unstable"></span><em></em>`;
    el.querySelector("b").textContent = `${who}:`;
    $("#transcript").append(el);
  }
  el.scrollIntoView({ block: "nearest" });
  return el;
}

function playerLine(utteranceId, stable, unstable, final = false) {
  const el = line(`u:${utteranceId}`, "You", "player");
  el.querySelector(".stable").textContent = stable;
  el.querySelector(".unstable").textContent = unstable;
  el.classList.toggle("partial", !final);
  if (final) el.dataset.final = "1";
}

function typedLine(text) {
  const el = line(`t:${Date.now()}`, "You", "player");
  el.querySelector(".stable").textContent = text;
  el.dataset.final = "1";
  demo.transcripts.push({ kind: "typed", text });
}

function characterLine(responseId, delta, endStatus = null) {
  const el = line(`r:${responseId}`, demo.ready.character.name, "character");
  el.querySelector(".stable").textContent += delta;
  if (endStatus && endStatus !== "completed") el.querySelector("em").textContent = ` (${endStatus})`;
}

function showTimings(end) {
  const rows = STAGES.filter((k) => k in end.timings).sort((a, b) => end.timings[a] - end.timings[b]);
  const max = Math.max(1, ...rows.map((k) => end.timings[k]));
  const table = $("#timings");
  table.replaceChildren();
  for (const key of rows) {
    const tr = table.insertRow();
    tr.insertCell().textContent = key.replace("_", " ");
    tr.dataset.stage = key;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * end.timings[key]) / max}%`;
    tr.insertCell().append(bar);
    tr.insertCell().textContent = `${Math.round(end.timings[key])} ms`;
  }
  const asr = demo.lastTranscriptTimings;
  $("#timings-note").textContent = `${end.status}, ${Math.round(end.audio_ms ?? 0)} ms of audio`
    + (asr && end.timings.transcript_final !== undefined ? `; speech recognition ${Math.round(asr.decode_ms ?? 0)} ms` : "");
}

// ---- wiring --------------------------------------------------------------------------------------------------

function wire() {
  $("#connect").addEventListener("click", () => connect().catch((err) => {
    demo.errors.push(err.message);
    status(err.message, "error");
  }));
  const talk = $("#talk");
  talk.addEventListener("pointerdown", (e) => { talk.setPointerCapture(e.pointerId); startTalking(); });
  for (const type of ["pointerup", "pointercancel"]) talk.addEventListener(type, () => stopTalking());
  $("#send").addEventListener("click", sendTyped);
  $("#text").addEventListener("keydown", (e) => { if (e.key === "Enter") sendTyped(); });
  window.addEventListener("keydown", (e) => {
    if (e.code === "Space" && !e.repeat && document.activeElement !== $("#text") && !talk.disabled) {
      e.preventDefault();
      startTalking();
    }
  });
  window.addEventListener("keyup", (e) => { if (e.code === "Space" && demo.state.holding) stopTalking(); });
  setControls(false);
  requestAnimationFrame(frame);
}

wire();
loadCharacters().catch((err) => status(`cannot load characters.json: ${err.message}`, "error"));
