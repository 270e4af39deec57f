// SPDX-License-Identifier: MIT
// An SVG face whose mouth follows OVR viseme cues on the audio clock, with smoothing (see clients/visemes/README.md:
// look ahead ~30 ms, ease towards the target with a ~45 ms time constant, bridge short silences).

const SVG = "http://www.w3.org/2000/svg";

/** Mouth shape per OVR viseme: jaw opening (0..1), lip width (0..1), rounding / pucker (0..1). */
export const MOUTH_SHAPES = {
  sil: { open: 0.0, wide: 0.5, round: 0.0 },
  PP: { open: 0.0, wide: 0.42, round: 0.15 },
  FF: { open: 0.1, wide: 0.55, round: 0.0 },
  TH: { open: 0.2, wide: 0.55, round: 0.0 },
  DD: { open: 0.25, wide: 0.6, round: 0.0 },
  kk: { open: 0.35, wide: 0.6, round: 0.0 },
  CH: { open: 0.25, wide: 0.38, round: 0.6 },
  SS: { open: 0.12, wide: 0.78, round: 0.0 },
  nn: { open: 0.2, wide: 0.6, round: 0.0 },
  RR: { open: 0.25, wide: 0.42, round: 0.5 },
  aa: { open: 0.9, wide: 0.62, round: 0.0 },
  E: { open: 0.5, wide: 0.78, round: 0.0 },
  ih: { open: 0.35, wide: 0.7, round: 0.0 },
  oh: { open: 0.62, wide: 0.38, round: 0.7 },
  ou: { open: 0.35, wide: 0.28, round: 0.95 },
};

/** Brow lift (-1..1) and mouth-corner curve (-1..1) per emotion. */
const EXPRESSIONS = {
  neutral: { brow: 0, smile: 0.1 }, joy: { brow: 0.4, smile: 0.8 }, anger: { brow: -0.9, smile: -0.4 },
  sadness: { brow: 0.6, smile: -0.6 }, fear: { brow: 0.9, smile: -0.3 }, surprise: { brow: 1, smile: 0 },
  disgust: { brow: -0.5, smile: -0.5 },
};

const LOOKAHEAD_MS = 30;
const TAU_MS = 45;
const BRIDGE_SIL_MS = 80;

/** Index of the cue whose [start_ms, end_ms) holds `ms` in cues sorted by start (-1 if none). */
export function cueAt(cues, ms) {
  let lo = 0;
  let hi = cues.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ms < cues[mid].start_ms) hi = mid - 1;
    else if (ms >= cues[mid].end_ms) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** The viseme the mouth should head for at audio time `ms` (short pauses bridged to the next sound). */
export function targetViseme(cues, ms) {
  const i = cueAt(cues, ms + LOOKAHEAD_MS);
  if (i < 0) return "sil";
  const cue = cues[i];
  if (cue.viseme === "sil" && cue.end_ms - cue.start_ms < BRIDGE_SIL_MS && i + 1 < cues.length) return cues[i + 1].viseme;
  return cue.viseme;
}

export class Face {
  /** Draws into `container` (an element); `name` labels the face. */
  constructor(container, name = "") {
    this.shape = { ...MOUTH_SHAPES.sil };
    this.expression = { ...EXPRESSIONS.neutral };
    this.emotion = "neutral";
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("viewBox", "0 0 200 220");
    this.svg.setAttribute("class", "face");
    this.svg.innerHTML = `
      <ellipse cx="100" cy="115" rx="80" ry="100" fill="#f2c9a0" stroke="#8a5a3c" stroke-width="3"/>
      <path d="M28 80 Q100 -10 172 80 Q150 40 100 38 Q50 40 28 80Z" fill="#2b1d14"/>
      <ellipse cx="70" cy="100" rx="9" ry="11" fill="#2b1d14"/><ellipse cx="130" cy="100" rx="9" ry="11" fill="#2b1d14"/>
      <path class="brow-l" stroke="#2b1d14" stroke-width="5" stroke-linecap="round" fill="none"/>
      <path class="brow-r" stroke="#2b1d14" stroke-width="5" stroke-linecap="round" fill="none"/>
      <path d="M100 110 L94 138 L104 138" stroke="#8a5a3c" stroke-width="3" fill="none" stroke-linecap="round"/>
      <path class="mouth" fill="#6b1f24" stroke="#8a3a3c" stroke-width="3" stroke-linejoin="round"/>
      <path class="teeth" fill="#fff"/>
      <text x="100" y="215" text-anchor="middle" class="face-name"></text>`;
    this.svg.querySelector(".face-name").textContent = name;
    this.mouth = this.svg.querySelector(".mouth");
    this.teeth = this.svg.querySelector(".teeth");
    this.browL = this.svg.querySelector(".brow-l");
    this.browR = this.svg.querySelector(".brow-r");
    container.replaceChildren(this.svg);
    this.draw();
  }

  setEmotion(emotion) {
    this.emotion = emotion;
  }

  /**
   * Eases the mouth towards `viseme` over `dtMs` of wall time and redraws.
   * Returns the rendered shape {open, wide, round}.
   */
  update(viseme, dtMs) {
    const target = MOUTH_SHAPES[viseme] || MOUTH_SHAPES.sil;
    const k = 1 - Math.exp(-Math.max(0, dtMs) / TAU_MS);
    for (const key of ["open", "wide", "round"]) this.shape[key] += (target[key] - this.shape[key]) * k;
    const expr = EXPRESSIONS[this.emotion] || EXPRESSIONS.neutral;
    const ke = 1 - Math.exp(-Math.max(0, dtMs) / 200);
    for (const key of ["brow", "smile"]) this.expression[key] += (expr[key] - this.expression[key]) * ke;
    this.draw();
    return { ...this.shape };
  }

  draw() {
    const { open, wide, round } = this.shape;
    const cx = 100;
    const cy = 160;
    const half = 16 + 30 * wide * (1 - 0.45 * round); // half width of the lips
    const upper = 3 + 6 * round + 4 * open; // upper lip lift
    const lower = 4 + 36 * open; // how far the lower lip drops
    const corner = -6 * this.expression.smile; // corners up (smile) or down
    const d = `M${cx - half} ${cy + corner}
      Q${cx} ${cy - upper - 4 * round} ${cx + half} ${cy + corner}
      Q${cx} ${cy + lower + 4} ${cx - half} ${cy + corner}Z`;
    this.mouth.setAttribute("d", d);
    const showTeeth = open > 0.15;
    this.teeth.setAttribute("d", showTeeth
      ? `M${cx - half * 0.6} ${cy - upper * 0.3} L${cx + half * 0.6} ${cy - upper * 0.3} L${cx + half * 0.5} ${cy + 3} L${cx - half * 0.5} ${cy + 3}Z`
      : "");
    const b = this.expression.brow;
    this.browL.setAttribute("d", `M56 ${78 - 6 * b} Q70 ${72 - 8 * b} 84 ${78 - 2 * b + (b < 0 ? 6 * -b : 0)}`);
    this.browR.setAttribute("d", `M116 ${78 - 2 * b + (b < 0 ? 6 * -b : 0)} Q130 ${72 - 8 * b} 144 ${78 - 6 * b}`);
  }
}
