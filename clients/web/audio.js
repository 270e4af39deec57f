// SPDX-License-Identifier: MIT
// Web Audio for the demo: streamed playback of a response's PCM16 chunks (scheduled AudioBuffers, with an
// audio clock in ms of the response's timeline) and the microphone through mic-worklet.js.

/**
 * Plays the chunks of one response back to back and tells how much of it has been heard.
 * `clockMs()` is the audio clock: ms of the response's audio timeline that reached the speakers (it stops
 * advancing when playback stalls, so lip sync and actions wait with the sound). A response plays until
 * `finish()` (its response.end) has been called and its last chunk has sounded: a gap between chunks
 * (synthesis slower than playback) is a stall, not the end.
 */
export class Player {
  constructor(ctx, { lead = 0.08 } = {}) {
    this.ctx = ctx;
    this.lead = lead; // seconds scheduled ahead of "now" for the first chunk (or after an underrun)
    this.out = ctx.createGain();
    this.out.connect(ctx.destination);
    this.responseId = null;
    this.finished = false; // response.end seen for responseId: no more chunks will come
    this.segments = []; // {ctxStart, startMs, durMs}
    this.sources = new Set();
    this.nextTime = 0;
    this.onended = null; // (responseId, playedMs) when the last scheduled chunk finished
  }

  /** Queues one chunk (`event`: response.audio; `pcm`: Int16Array; `rate`: its sample rate). */
  enqueue(event, pcm, rate) {
    if (event.response_id !== this.responseId) {
      this.stop();
      this.responseId = event.response_id;
    }
    const buffer = this.ctx.createBuffer(1, pcm.length, rate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.out);
    const at = Math.max(this.nextTime, this.ctx.currentTime + this.lead);
    source.start(at);
    this.nextTime = at + buffer.duration;
    this.segments.push({ ctxStart: at, startMs: event.start_ms, durMs: buffer.duration * 1000 });
    this.sources.add(source);
    source.onended = () => {
      this.sources.delete(source);
      if (this.finished) this._drained();
    };
  }

  /** No more chunks will come for `responseId` (its response.end arrived): it ends when the last one has sounded. */
  finish(responseId) {
    if (responseId !== this.responseId) return;
    this.finished = true;
    this._drained();
  }

  _drained() {
    if (this.sources.size > 0 || this.responseId === null) return;
    const ended = { responseId: this.responseId, playedMs: this.clockMs() };
    this.responseId = null;
    this.segments = [];
    this.onended?.(ended.responseId, ended.playedMs);
  }

  /** True from a response's first chunk until it has finished and sounded (stalls between chunks included). */
  get playing() {
    return this.responseId !== null;
  }

  /** ms of the current response's audio timeline heard so far (0 before it starts). */
  clockMs() {
    const t = this.ctx.currentTime - (this.ctx.outputLatency || 0);
    let heard = 0;
    for (const seg of this.segments) {
      if (t < seg.ctxStart) break;
      heard = seg.startMs + Math.min(seg.durMs, (t - seg.ctxStart) * 1000);
    }
    return heard;
  }

  /** Stops at once; returns {responseId, playedMs} of what was playing (responseId null if nothing). */
  stop() {
    const stopped = { responseId: this.responseId, playedMs: this.clockMs() };
    for (const source of this.sources) {
      source.onended = null;
      source.stop();
    }
    this.sources.clear();
    this.segments = [];
    this.responseId = null;
    this.finished = false;
    this.nextTime = 0;
    return stopped;
  }
}

const worklets = new WeakMap(); // AudioContext -> Promise of addModule

/**
 * The microphone as PCM16 mono frames: `onFrame(Int16Array)` about every 20 ms, at `sampleRate`
 * (16000 unless the context runs slower). Audio is processed in an AudioWorklet, off the main thread.
 */
export class Microphone {
  static async open(ctx, onFrame, { targetRate = 16000 } = {}) {
    if (!navigator.mediaDevices?.getUserMedia) throw new Error("no microphone API (the page must be served over http://localhost or https)");
    if (!worklets.has(ctx)) worklets.set(ctx, ctx.audioWorklet.addModule(new URL("./mic-worklet.js", import.meta.url)));
    await worklets.get(ctx);
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    return new Microphone(ctx, stream, onFrame, targetRate);
  }

  constructor(ctx, stream, onFrame, targetRate) {
    this.stream = stream;
    this.sampleRate = Math.min(targetRate, ctx.sampleRate);
    this.source = ctx.createMediaStreamSource(stream);
    this.node = new AudioWorkletNode(ctx, "pcm16-capture", { processorOptions: { targetRate, frameMs: 20 } });
    this.node.port.onmessage = (msg) => {
      if (msg.data.type === "frame") onFrame(new Int16Array(msg.data.pcm));
    };
    this.mute = ctx.createGain(); // keep the node pulled by the graph without playing the mic back
    this.mute.gain.value = 0;
    this.source.connect(this.node).connect(this.mute).connect(ctx.destination);
  }

  close() {
    this.node.port.onmessage = null;
    this.source.disconnect();
    this.node.disconnect();
    this.mute.disconnect();
    for (const track of this.stream.getTracks()) track.stop();
  }
}
