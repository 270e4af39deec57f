// SPDX-License-Identifier: MIT
// A small 2-D view of the scene JSON a client declares (objects, locations, characters) where the character
// acts out move / grab / give: it walks to a place, picks an object up, hands it to someone. Any other verb (one the
// scene declares in `verbs`, e.g. sit or emote) is shown as text, with its description and its arguments; the
// character walks to the entity it names, if any.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 320;
const WALK_PX_PER_S = 260;

function spread(count, y, margin = 70) {
  const step = count > 1 ? (WIDTH - 2 * margin) / (count - 1) : 0;
  return Array.from({ length: count }, (_, i) => ({ x: count > 1 ? margin + i * step : WIDTH / 2, y }));
}

function node(tag, attrs, parent) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  parent?.appendChild(el);
  return el;
}

const label = (entity) => entity.name || entity.id.replaceAll("_", " ");

export class SceneView {
  /** Draws `scene` into `container`; `actor` is {id, name} of the character who acts. */
  constructor(container, scene, actor) {
    this.actor = actor;
    this.places = new Map(); // id -> {x, y, kind}
    this.names = new Map(
      ["objects", "locations", "characters"].flatMap((k) => (scene[k] || []).map((e) => [e.id, label(e)])),
    );
    this.verbs = new Map((scene.verbs || []).map((v) => [v.name, v])); // the scene's own verbs, by name
    this.objects = new Map(); // object id -> {g, x, y, heldBy}
    this.queue = Promise.resolve();
    this.svg = node("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "scene" });
    node("rect", { x: 4, y: 4, width: WIDTH - 8, height: HEIGHT - 8, rx: 14, class: "floor" }, this.svg);
    node("text", { x: 16, y: 24, class: "scene-title" }, this.svg).textContent = scene.name || "";
    this.caption = node("text", { x: WIDTH - 16, y: 24, class: "scene-caption", "text-anchor": "end" }, this.svg);

    const locations = scene.locations || [];
    spread(locations.length, 62).forEach((p, i) => {
      const g = node("g", { transform: `translate(${p.x},${p.y})`, class: "location" }, this.svg);
      node("rect", { x: -52, y: -18, width: 104, height: 36, rx: 8 }, g);
      node("text", { y: 5, "text-anchor": "middle" }, g).textContent = label(locations[i]);
      this.places.set(locations[i].id, { x: p.x, y: p.y + 48, kind: "location" });
    });
    const table = node("rect", { x: 60, y: 138, width: WIDTH - 120, height: 44, rx: 10, class: "table" }, this.svg);
    table.dataset.kind = "table";
    const objects = scene.objects || [];
    spread(objects.length, 160, 110).forEach((p, i) => {
      const g = node("g", { transform: `translate(${p.x},${p.y})`, class: "object", "data-id": objects[i].id }, this.svg);
      node("circle", { r: 11 }, g);
      node("text", { y: -16, "text-anchor": "middle" }, g).textContent = label(objects[i]);
      this.objects.set(objects[i].id, { g, x: p.x, y: p.y, heldBy: null });
      this.places.set(objects[i].id, { x: p.x, y: p.y + 46, kind: "object" });
    });
    const people = (scene.characters || []).filter((c) => c.id !== actor.id);
    this.people = new Map();
    spread(people.length, 285, 120).forEach((p, i) => {
      const g = node("g", { transform: `translate(${p.x},${p.y})`, class: "person" }, this.svg);
      node("circle", { r: 16 }, g);
      node("text", { y: 34, "text-anchor": "middle" }, g).textContent = label(people[i]);
      this.people.set(people[i].id, { x: p.x, y: p.y });
      this.places.set(people[i].id, { x: p.x, y: p.y - 40, kind: "character" });
    });
    this.pos = { x: WIDTH / 2, y: 228 };
    this.actorEl = node("g", { class: "actor" }, this.svg);
    node("circle", { r: 18 }, this.actorEl);
    node("text", { y: 5, "text-anchor": "middle" }, this.actorEl).textContent = (actor.name || actor.id).slice(0, 1);
    this._place(this.actorEl, this.pos);
    container.replaceChildren(this.svg);
  }

  /** Queues an action {verb, args} (args: every argument by name); resolves when it has been acted out. */
  perform(action) {
    this.queue = this.queue.then(() => this._act(action)).catch((err) => console.error("scene action failed", err));
    return this.queue;
  }

  /** The action in words: "Jin gives chopsticks to Kai"; a declared verb by its description and arguments:
   *  "Jin sits down on a seat (seat: stool)"; a verb the scene does not describe: "Jin does wave". */
  describe({ verb, args = {} }) {
    const name = (id) => this.names.get(id) || id;
    const { object, target } = args;
    if (verb === "move") return `${this.actor.name} moves to ${name(target)}`;
    if (verb === "grab") return `${this.actor.name} grabs ${name(object)}`;
    if (verb === "give") return `${this.actor.name} gives ${name(object)} to ${name(target)}`;
    const described = this.verbs.get(verb)?.description;
    const listed = Object.entries(args).map(([k, v]) => `${k}: ${name(v)}`).join(", ");
    return `${this.actor.name} ${described || `does ${verb}`}${listed ? ` (${listed})` : ""}`;
  }

  async _act(action) {
    this.caption.textContent = this.describe(action);
    const { verb, args = {} } = action;
    const { object, target } = args;
    if (verb === "move") {
      await this._walkTo(target);
      return;
    }
    if (verb !== "grab" && verb !== "give") { // a declared verb: walk to the first entity it names, if any
      const place = Object.values(args).find((v) => this.places.has(v));
      if (place) await this._walkTo(place);
      return;
    }
    const item = this.objects.get(object);
    if (!item) return; // the grammar only allows declared objects; a changed scene could still lack it
    if (item.heldBy !== this.actor.id) {
      await this._walkTo(object);
      item.heldBy = this.actor.id;
      this._carry();
    }
    if (verb === "give") {
      await this._walkTo(target);
      const person = this.people.get(target);
      item.heldBy = target;
      if (person) this._move(item, { x: person.x + 20, y: person.y - 14 });
    }
  }

  _walkTo(id) {
    const to = this.places.get(id);
    if (!to) return Promise.resolve();
    const from = { ...this.pos };
    const ms = (Math.hypot(to.x - from.x, to.y - from.y) / WALK_PX_PER_S) * 1000;
    return new Promise((resolve) => {
      const t0 = performance.now();
      const step = (now) => {
        const t = Math.min(1, (now - t0) / Math.max(ms, 1));
        const e = t < 0.5 ? 2 * t * t : 1 - (-2 * t + 2) ** 2 / 2; // ease in-out
        this.pos = { x: from.x + (to.x - from.x) * e, y: from.y + (to.y - from.y) * e };
        this._place(this.actorEl, this.pos);
        this._carry();
        if (t < 1) requestAnimationFrame(step);
        else resolve();
      };
      requestAnimationFrame(step);
    });
  }

  _carry() {
    for (const item of this.objects.values()) {
      if (item.heldBy === this.actor.id) this._move(item, { x: this.pos.x + 20, y: this.pos.y - 14 });
    }
  }

  _move(item, p) {
    item.x = p.x;
    item.y = p.y;
    this._place(item.g, p);
    const name = item.g.querySelector("text"); // once carried or handed over, label it to the side
    if (item.heldBy && name.getAttribute("text-anchor") !== "start") {
      for (const [k, v] of Object.entries({ x: 15, y: 4, "text-anchor": "start" })) name.setAttribute(k, v);
    }
  }

  _place(el, p) {
    el.setAttribute("transform", `translate(${p.x.toFixed(1)},${p.y.toFixed(1)})`);
  }
}
