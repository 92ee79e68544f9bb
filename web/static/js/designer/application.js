// The designer's model of an Application, without the DOM: its components (the canvas's nodes,
// with their traits inside) and policies read from YAML and written back into it, and the edits
// the canvas makes. A component is edited as a step is (name, type, properties, dependsOn), so
// model.js's list edits (connect, rename, remove, setField) serve components unchanged; this
// module adds what only Applications have: traits on a component, and policies.
//
// As for Workflows, the YAML text is the truth: writes replace spec.components and
// spec.policies through yaml's Document, keeping the rest (comments, metadata, spec.workflow).

import {parseDocument, isMap, isSeq} from '../../vendor/yaml-2.9.1/yaml.js';
import {uniqueName, clone, find, isObj, readDocument} from './model.js';

// STARTER is the Application a new design begins with.
export const STARTER = `# An Application designed on the canvas: the YAML follows every change there.
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: my-app
  namespace: default
spec:
  components: []
`;

// parse reads an Application's YAML: its components (as `steps`, the canvas's nodes), policies,
// metadata and, per component name, the lines its item covers. A syntax error, or components or
// policies that are not lists, throw an Error with the line.
export function parse(text) {
  const {doc, lc, obj} = readDocument(text);
  const spec = isObj(obj.spec) ? obj.spec : {};
  const list = (key) => {
    const v = spec[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) {
      const n = doc.getIn(['spec', key], true);
      throw Object.assign(new Error(`spec.${key}: not a list`), {line: n && n.range ? lc.linePos(n.range[0]).line : 1});
    }
    return v.filter(isObj);
  };
  const steps = list('components');
  const policies = list('policies');
  const lines = [];
  const seq = doc.getIn(['spec', 'components'], true);
  if (isSeq(seq)) {
    seq.items.forEach((item, i) => {
      const c = spec.components[i];
      if (item && item.range && isObj(c)) lines.push({name: c.name, from: lc.linePos(item.range[0]).line, to: lc.linePos(Math.max(item.range[0], item.range[1] - 1)).line});
    });
  }
  return {steps, policies, metadata: isObj(obj.metadata) ? obj.metadata : {}, kind: obj.kind, lines};
}

// write puts components and policies into the YAML text in place of spec.components and
// spec.policies (no policies: the key is dropped), keeping the rest of the document.
export function write(text, components, policies = []) {
  let doc = parseDocument(text);
  if (doc.errors.length || !isMap(doc.contents)) doc = parseDocument(STARTER);
  if (!isMap(doc.get('spec', true))) doc.set('spec', doc.createNode({}));
  doc.setIn(['spec', 'components'], doc.createNode(components));
  if (policies.length) doc.setIn(['spec', 'policies'], doc.createNode(policies));
  else doc.deleteIn(['spec', 'policies']);
  return doc.toString({lineWidth: 0});
}

// addComponent answers components with a new one of the type, and its name.
export function addComponent(components, type) {
  const out = clone(components);
  const name = uniqueName(out, type);
  out.push({name, type});
  return {steps: out, name};
}

// addTrait answers components with a trait of the type added to the named component; a
// component has one trait of a type, as KubeVela renders them.
export function addTrait(components, component, type) {
  const out = clone(components);
  const f = find(out, component);
  if (!f) throw new Error(`no component ${component}`);
  const traits = Array.isArray(f.step.traits) ? f.step.traits : [];
  if (traits.some((t) => t.type === type)) throw new Error(`${component} has a ${type} trait already`);
  f.step.traits = [...traits, {type}];
  return out;
}

// removeTrait answers components without the component's trait of the type.
export function removeTrait(components, component, type) {
  const out = clone(components);
  const f = find(out, component);
  if (!f || !Array.isArray(f.step.traits)) return out;
  f.step.traits = f.step.traits.filter((t) => t.type !== type);
  if (f.step.traits.length === 0) delete f.step.traits;
  return out;
}

// setTraitProperty answers components with one property of a component's trait set (undefined
// or "" deletes it).
export function setTraitProperty(components, component, type, key, value) {
  const out = clone(components);
  const f = find(out, component);
  const t = f && Array.isArray(f.step.traits) && f.step.traits.find((x) => x.type === type);
  if (!t) throw new Error(`${component} has no ${type} trait`);
  setProp(t, key, value);
  return out;
}

// addPolicy answers policies with a new one of the type, and its name.
export function addPolicy(policies, type) {
  const out = clone(policies);
  const name = uniqueName(out, type);
  out.push({name, type});
  return {policies: out, name};
}

// removePolicy answers policies without the named one.
export const removePolicy = (policies, name) => clone(policies).filter((p) => p.name !== name);

// setPolicyProperty answers policies with one property of the named policy set.
export function setPolicyProperty(policies, name, key, value) {
  const out = clone(policies);
  const p = out.find((x) => x.name === name);
  if (!p) throw new Error(`no policy ${name}`);
  setProp(p, key, value);
  return out;
}

function setProp(obj, key, value) {
  if (!isObj(obj.properties)) obj.properties = {};
  if (value === undefined || value === '') delete obj.properties[key];
  else obj.properties[key] = value;
  if (Object.keys(obj.properties).length === 0) delete obj.properties;
}

// componentOfProblem answers the name of the component a server problem is about: from its field
// path (spec.components[i]...) when it has one, else from its line; "" when neither says.
export function componentOfProblem(parsed, problem) {
  const m = /components\[(\d+)\]/.exec((problem && problem.field) || '');
  if (m && parsed && parsed.steps[Number(m[1])]) return parsed.steps[Number(m[1])].name;
  if (problem && problem.line && parsed) {
    const hit = parsed.lines.find((s) => problem.line >= s.from && problem.line <= s.to);
    if (hit) return hit.name;
  }
  return '';
}
