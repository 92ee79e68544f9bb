// The designer's model without the DOM: a Workflow's steps read from YAML and written back into
// it, the edits the canvas makes (add a step, connect two, put one in a group), the form fields a
// step type's parameters ask for, and which step a server problem is about.
//
// The YAML text is the truth: the canvas's edits rewrite its `steps` through yaml's Document, so
// comments and key order outside `steps` (the header, metadata, parameters) are kept; comments
// inside `steps` are dropped when the canvas changes them. Node positions live beside the text,
// by step name, and survive a re-parse.

import {parseDocument, isMap, isSeq, LineCounter} from '../../vendor/yaml-2.9.1/yaml.js';

// STARTER is the Workflow a new design begins with.
export const STARTER = `# A Workflow designed on the canvas: the YAML follows every change there.
apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata:
  name: my-design
  namespace: default
steps: []
`;

// isObj says v is a plain object (a YAML mapping).
export const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// readDocument parses YAML text that must be one mapping: the document (for its positions),
// its line counter and its value. A syntax error, or a document that is not a mapping, throws
// an Error with the line it is on.
export function readDocument(text) {
  const lc = new LineCounter();
  const doc = parseDocument(text, {lineCounter: lc, prettyErrors: false});
  if (doc.errors.length) {
    const e = doc.errors[0];
    const err = new Error(e.message.split('\n')[0]);
    err.line = e.linePos && e.linePos[0] ? e.linePos[0].line : lc.linePos(e.pos[0]).line;
    throw err;
  }
  const obj = doc.toJS() || {};
  if (!isObj(obj)) throw Object.assign(new Error('the document is not a mapping'), {line: 1});
  return {doc, lc, obj};
}

// parse reads a Workflow's YAML: its steps (plain objects), its metadata and, per step name,
// the lines its item covers. A syntax error or a Workflow without a list of steps throws an
// Error with the line it is on.
export function parse(text) {
  const {doc, lc, obj} = readDocument(text);
  const steps = obj.steps === undefined || obj.steps === null ? [] : obj.steps;
  if (!Array.isArray(steps)) throw Object.assign(new Error('steps: not a list'), {line: lineOf(doc, lc, ['steps'])});
  const lines = [];
  const seq = doc.get('steps', true);
  if (isSeq(seq)) {
    seq.items.forEach((item, i) => {
      lines.push(...spans(item, lc, steps[i]));
    });
  }
  return {steps: steps.filter(isObj), metadata: isObj(obj.metadata) ? obj.metadata : {}, kind: obj.kind, lines};
}

function lineOf(doc, lc, path) {
  const n = doc.getIn(path, true);
  return n && n.range ? lc.linePos(n.range[0]).line : 1;
}

// spans answers [{name, from, to}] for a step's item and its sub-steps' items (lines, 1-based).
function spans(item, lc, step) {
  if (!item || !item.range || !isObj(step)) return [];
  const out = [{name: step.name, from: lc.linePos(item.range[0]).line, to: lc.linePos(Math.max(item.range[0], item.range[1] - 1)).line}];
  const subs = isMap(item) ? item.get('subSteps', true) : null;
  if (isSeq(subs) && Array.isArray(step.subSteps)) subs.items.forEach((s, i) => out.push(...spans(s, lc, step.subSteps[i])));
  return out;
}

// write puts steps into the YAML text in place of its `steps`, keeping the rest of the document
// (comments, order) as it is.
export function write(text, steps) {
  const doc = parseDocument(text);
  if (doc.errors.length || !isMap(doc.contents)) {
    const fresh = parseDocument(STARTER);
    fresh.set('steps', fresh.createNode(steps));
    return fresh.toString();
  }
  doc.set('steps', doc.createNode(steps));
  return doc.toString({lineWidth: 0});
}

// walk calls fn(step, parentList) for every step, sub-steps after their group.
export function walk(steps, fn, parent = null) {
  for (const s of steps) {
    fn(s, parent);
    if (Array.isArray(s.subSteps)) walk(s.subSteps, fn, s);
  }
}

// find answers {step, list, group} for a step's name, or null.
export function find(steps, name, group = null) {
  for (const s of steps) {
    if (s.name === name) return {step: s, list: steps, group};
    if (Array.isArray(s.subSteps)) {
      const f = find(s.subSteps, name, s);
      if (f) return f;
    }
  }
  return null;
}

// names answers every step name in use.
export function names(steps) {
  const out = new Set();
  walk(steps, (s) => out.add(s.name));
  return out;
}

// uniqueName answers the type's name, numbered when it is taken: "suspend", "suspend-2", ...
export function uniqueName(steps, type) {
  const used = names(steps);
  const base = String(type).replace(/[^a-z0-9-]+/gi, '-').toLowerCase() || 'step';
  if (!used.has(base)) return base;
  for (let i = 2; ; i++) if (!used.has(`${base}-${i}`)) return `${base}-${i}`;
}

// clone copies steps deeply (the canvas's edits answer new lists, never change the old).
export const clone = (steps) => JSON.parse(JSON.stringify(steps));

// addStep answers steps with a new step of the type, at the top level or at the end of the
// group's sub-steps, and the new step's name.
export function addStep(steps, type, group = '') {
  const out = clone(steps);
  const name = uniqueName(out, type);
  const step = {name, type};
  if (type === 'step-group') step.subSteps = [];
  if (group) {
    const g = find(out, group);
    if (!g || g.step.type !== 'step-group') throw new Error(`${group} is not a step group`);
    g.step.subSteps = [...(g.step.subSteps || []), step];
  } else {
    out.push(step);
  }
  return {steps: out, name};
}

// connect makes `to` depend on `from`. Both must be in the same list (top level, or one
// group's sub-steps), as the engine resolves dependsOn among siblings.
export function connect(steps, from, to) {
  if (from === to) throw new Error('a step cannot depend on itself');
  const out = clone(steps);
  const a = find(out, from);
  const b = find(out, to);
  if (!a || !b) throw new Error(`no step ${a ? to : from}`);
  if (a.list !== b.list) throw new Error(`${from} and ${to} are not in the same group: dependsOn joins siblings only`);
  if (dependsOnPath(out, from, to)) throw new Error(`${from} already depends on ${to}: that would be a cycle`);
  const deps = Array.isArray(b.step.dependsOn) ? b.step.dependsOn : [];
  if (!deps.includes(from)) b.step.dependsOn = [...deps, from];
  return out;
}

// dependsOnPath answers whether a depends on b, directly or through others.
function dependsOnPath(steps, a, b, seen = new Set()) {
  if (seen.has(a)) return false;
  seen.add(a);
  const f = find(steps, a);
  const deps = (f && Array.isArray(f.step.dependsOn) && f.step.dependsOn) || [];
  return deps.includes(b) || deps.some((d) => dependsOnPath(steps, d, b, seen));
}

// moveInto answers steps with the named step moved into the group (or to the top level when
// group is ""), dropping dependencies that no longer join siblings.
export function moveInto(steps, name, group) {
  if (name === group) throw new Error('a group cannot hold itself');
  const out = clone(steps);
  const f = find(out, name);
  if (!f) throw new Error(`no step ${name}`);
  if (group && find(f.step.subSteps || [], group)) throw new Error(`${group} is inside ${name}`);
  let target = out;
  if (group) {
    const g = find(out, group);
    if (!g || g.step.type !== 'step-group') throw new Error(`${group} is not a step group`);
    g.step.subSteps = g.step.subSteps || [];
    target = g.step.subSteps;
  }
  if (target === f.list) return out;
  f.list.splice(f.list.indexOf(f.step), 1);
  for (const s of f.list) if (Array.isArray(s.dependsOn)) s.dependsOn = s.dependsOn.filter((d) => d !== name);
  delete f.step.dependsOn;
  target.push(f.step);
  tidy(out);
  return out;
}

// remove answers steps without the named step (and what it held), and without dependencies on it.
export function remove(steps, name) {
  const out = clone(steps);
  const f = find(out, name);
  if (!f) return out;
  f.list.splice(f.list.indexOf(f.step), 1);
  tidy(out);
  walk(out, (s) => {
    if (Array.isArray(s.dependsOn)) s.dependsOn = s.dependsOn.filter((d) => d !== name);
  });
  tidy(out);
  return out;
}

// tidy drops empty dependsOn lists, which YAML would show as [].
function tidy(steps) {
  walk(steps, (s) => {
    if (Array.isArray(s.dependsOn) && s.dependsOn.length === 0) delete s.dependsOn;
  });
}

// rename answers steps with a step renamed, the dependencies on it following.
export function rename(steps, from, to) {
  if (!to || from === to) return steps;
  if (names(steps).has(to)) throw new Error(`a step ${to} exists already`);
  const out = clone(steps);
  walk(out, (s) => {
    if (s.name === from) s.name = to;
    if (Array.isArray(s.dependsOn)) s.dependsOn = s.dependsOn.map((d) => (d === from ? to : d));
  });
  return out;
}

// setField answers steps with one of a step's fields set (undefined or "" deletes it); a field
// of its properties when path is ['properties', name].
export function setField(steps, name, path, value) {
  const out = clone(steps);
  const f = find(out, name);
  if (!f) throw new Error(`no step ${name}`);
  let obj = f.step;
  for (const k of path.slice(0, -1)) {
    if (!isObj(obj[k])) obj[k] = {};
    obj = obj[k];
  }
  const last = path[path.length - 1];
  if (value === undefined || value === '') delete obj[last];
  else obj[last] = value;
  if (path[0] === 'properties' && isObj(f.step.properties) && Object.keys(f.step.properties).length === 0) delete f.step.properties;
  return out;
}

// fieldKind answers how a parameter of a step type is edited, from the type `step.Describe`
// gives it: "string", "number", "bool", "enum" (with its options) or "json" for the rest.
export function fieldKind(param) {
  const t = String((param && param.type) || '').trim();
  const opts = t.split('|').map((x) => x.trim());
  if (opts.length > 1 && opts.every((o) => /^"(?:[^"\\]|\\.)*"$/.test(o.replace(/^\*/, '')))) {
    return {kind: 'enum', options: opts.map((o) => JSON.parse(o.replace(/^\*/, '')))};
  }
  // A default marked on one side of a kind ("*1 | int"): the kind.
  const plain = opts.filter((o) => !o.startsWith('*'));
  if (opts.length === 2 && plain.length === 1) return fieldKind({type: plain[0]});
  if (/^string$/.test(t)) return {kind: 'string'};
  if (/^(int|float|number|uint|int\d+|uint\d+)$/.test(t)) return {kind: 'number'};
  if (/^bool$/.test(t)) return {kind: 'bool'};
  return {kind: 'json'};
}

// readField turns what a form field holds into the property's value: undefined when empty,
// a number, a bool, the JSON's value; an invalid number or JSON throws.
export function readField(kind, raw) {
  if (kind === 'bool') return raw ? true : undefined;
  const text = String(raw ?? '').trim();
  if (text === '') return undefined;
  if (kind === 'number') {
    const n = Number(text);
    if (!Number.isFinite(n)) throw new Error(`${text} is not a number`);
    return n;
  }
  if (kind === 'json') {
    try {
      return JSON.parse(text);
    } catch {
      throw new Error('not valid JSON');
    }
  }
  return String(raw);
}

// showField writes a property's value for its form field.
export function showField(kind, value) {
  if (value === undefined || value === null) return kind === 'bool' ? false : '';
  if (kind === 'bool') return value === true;
  if (kind === 'json') return JSON.stringify(value);
  return String(value);
}

// stepOfProblem answers the name of the step a server problem is about: from its field path
// (steps[1].subSteps[0]...) when it has one, else from its line; "" when neither says.
export function stepOfProblem(parsed, problem) {
  const m = /(?:^|\.)steps\[(\d+)\](?:\.subSteps\[(\d+)\])?/.exec((problem && problem.field) || '');
  if (m && parsed) {
    const top = parsed.steps[Number(m[1])];
    if (top && m[2] !== undefined && Array.isArray(top.subSteps) && top.subSteps[Number(m[2])]) return top.subSteps[Number(m[2])].name;
    if (top) return top.name;
  }
  if (problem && problem.line && parsed) {
    let best = null;
    for (const s of parsed.lines) {
      if (problem.line >= s.from && problem.line <= s.to && (!best || s.to - s.from <= best.to - best.from)) best = s;
    }
    if (best) return best.name;
  }
  return '';
}

// toRun answers the WorkflowRun that runs the designed Workflow now, in its namespace, named
// after it with a suffix the server makes.
export function toRun(parsed) {
  const md = parsed.metadata || {};
  return {
    apiVersion: 'core.oam.dev/v1alpha1',
    kind: 'WorkflowRun',
    metadata: {namespace: md.namespace || 'default', generateName: `${md.name || 'design'}-`},
    spec: {workflowSpec: {steps: parsed.steps}},
  };
}

// place answers a position for each top-level step: the one it had, else the next free cell
// of a grid below the others.
export function place(steps, positions, {w = 200, h = 90} = {}) {
  const out = new Map();
  let next = 0;
  for (const s of steps) {
    const p = positions.get(s.name);
    if (p) out.set(s.name, p);
  }
  for (const s of steps) {
    if (out.has(s.name)) continue;
    for (;;) {
      const cell = {x: 20 + (next % 4) * w, y: 20 + Math.floor(next / 4) * h};
      next++;
      const taken = [...out.values()].some((p) => Math.abs(p.x - cell.x) < w / 2 && Math.abs(p.y - cell.y) < h / 2);
      if (!taken) {
        out.set(s.name, cell);
        break;
      }
    }
  }
  return out;
}
