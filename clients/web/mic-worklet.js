// SPDX-License-Identifier: MIT
// AudioWorklet: the microphone → PCM16 mono frames at 16 kHz (or processorOptions.targetRate), resampled from
// the AudioContext's rate with a box filter (each output sample averages the input span it covers, which also
// removes most of what would alias). Frames of processorOptions.frameMs (default 20 ms) are posted to the main
// thread as transferred ArrayBuffers of Int16 little-endian samples. Runs on the audio rendering thread.

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate = 16000, frameMs = 20 } = options.processorOptions || {};
    this.rate = Math.min(targetRate, sampleRate); // `sampleRate`: the context's rate (AudioWorkletGlobalScope)
    this.step = sampleRate / this.rate; // input samples per output sample (>= 1)
    this.frameLength = Math.round((this.rate * frameMs) / 1000);
    this.frame = new Int16Array(this.frameLength);
    this.filled = 0;
    this.acc = 0; // weighted sum of the input samples of the output sample being built
    this.pos = 0; // input weight gathered so far for it (0..step)
    this.port.postMessage({ type: "format", sampleRate: this.rate, contextRate: sampleRate });
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // no input connected yet
    const n = channels[0].length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (const channel of channels) x += channel[i];
      x /= channels.length; // down-mix to mono
      const need = this.step - this.pos;
      if (need > 1) {
        this.acc += x;
        this.pos += 1;
      } else {
        this.acc += x * need;
        this.push(this.acc / this.step);
        const rest = 1 - need;
        this.acc = x * rest;
        this.pos = rest;
      }
    }
    return true;
  }

  push(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    this.frame[this.filled++] = Math.round(clamped * 32767);
    if (this.filled === this.frameLength) {
      const buffer = this.frame.buffer;
      this.port.postMessage({ type: "frame", pcm: buffer }, [buffer]);
      this.frame = new Int16Array(this.frameLength);
      this.filled = 0;
    }
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
