// toYAML writes JSON data as block-style YAML, the way people write workflow files: multi-line
// strings (CUE templates) as literal blocks, strings quoted only when YAML would read them as
// something else.

const PLAIN_UNSAFE = /^[\s\-?:,[\]{}#&*!|>'"%@`~]|[\s:]$|: | #|^$|[\u0000-\u001f\u007f]/;
const LOOKS_TYPED = /^(?:true|false|yes|no|on|off|y|n|null|~|[-+]?(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][-+]?\d+)?|0x[0-9a-fA-F]+|0o[0-7]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/i;

function scalar(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean' || typeof v === 'number') return String(v);
  const str = String(v);
  if (PLAIN_UNSAFE.test(str) || LOOKS_TYPED.test(str)) return JSON.stringify(str);
  return str;
}

function isBlockString(v) {
  return typeof v === 'string' && v.includes('\n') && !/^[ \t]/.test(v) && !/[\u0000-\u0008\u000b-\u001f\u007f]/.test(v) && !/\n\n+$/.test(v) && !/(^|\n)[ \t]+(\n|$)/.test(v);
}

function block(str, indent) {
  const chomp = str.endsWith('\n') ? '' : '-';
  const body = (chomp ? str : str.slice(0, -1)).split('\n').map((l) => (l ? indent + l : '')).join('\n');
  return `|${chomp}\n${body}`;
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isEmpty = (v) => (Array.isArray(v) ? v.length === 0 : isObj(v) && Object.keys(v).length === 0);

function key(k) {
  return scalar(k);
}

// value writes v after "key:" or "- " at the given indent; answers the text that follows the
// marker, starting with a space or a newline.
function after(v, indent) {
  if (isEmpty(v)) return Array.isArray(v) ? ' []' : ' {}';
  if (Array.isArray(v)) return '\n' + seq(v, indent);
  if (isObj(v)) return '\n' + map(v, indent + '  ');
  if (isBlockString(v)) return ' ' + block(v, indent + '  ');
  return ' ' + scalar(v);
}

function map(obj, indent) {
  return Object.entries(obj)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${indent}${key(k)}:${after(v, indent)}`)
    .join('\n');
}

function seq(arr, indent) {
  return arr
    .map((v) => {
      if (isObj(v) && !isEmpty(v)) {
        // The first key on the dash's line, the others aligned under it.
        const inner = map(v, indent + '  ');
        return `${indent}- ${inner.slice(indent.length + 2)}`;
      }
      if (Array.isArray(v) && !isEmpty(v)) {
        const inner = seq(v, indent + '  ');
        return `${indent}- ${inner.slice(indent.length + 2)}`;
      }
      return `${indent}-${after(v, indent)}`;
    })
    .join('\n');
}

export function toYAML(v) {
  if (isObj(v) && !isEmpty(v)) return map(v, '') + '\n';
  if (Array.isArray(v) && !isEmpty(v)) return seq(v, '') + '\n';
  return after(v, '').trimStart() + '\n';
}

// cleanObject drops the metadata the server keeps for itself, so that the YAML shown for
// editing is what a person writes.
export function cleanObject(obj) {
  const copy = JSON.parse(JSON.stringify(obj));
  // apiVersion, kind and metadata first, as such files are written.
  const out = {};
  for (const k of ['apiVersion', 'kind', 'metadata']) if (k in copy) out[k] = copy[k];
  Object.assign(out, copy);
  if (out.metadata) {
    for (const k of ['uid', 'resourceVersion', 'creationTimestamp', 'generation', 'managedFields', 'selfLink']) delete out.metadata[k];
    for (const k of ['labels', 'annotations']) {
      if (out.metadata[k] && Object.keys(out.metadata[k]).length === 0) delete out.metadata[k];
    }
  }
  if (out.status !== undefined && (out.status === null || isEmpty(out.status))) delete out.status;
  return out;
}

// metadataOf reads metadata.name and metadata.namespace from the first document of a YAML
// text written in block style: enough to know where a saved object went when the server's
// answer does not say.
export function metadataOf(text) {
  const out = {};
  const lines = text.split('\n');
  let inMeta = false;
  let metaIndent = -1;
  for (const raw of lines) {
    if (/^---/.test(raw) && (out.name || inMeta)) break;
    const line = raw.replace(/\s+#.*$/, '');
    if (!line.trim()) continue;
    const indent = line.length - line.trimStart().length;
    if (indent === 0) {
      inMeta = /^metadata:\s*$/.test(line);
      const flow = /^metadata:\s*\{(.*)\}\s*$/.exec(line);
      if (flow) {
        for (const part of flow[1].split(',')) {
          const m = /^\s*(name|namespace)\s*:\s*["']?([^"']*)["']?\s*$/.exec(part);
          if (m) out[m[1]] = m[2];
        }
      }
      metaIndent = -1;
      continue;
    }
    if (!inMeta) continue;
    if (metaIndent < 0) metaIndent = indent;
    if (indent !== metaIndent) continue;
    const m = /^\s*(name|namespace)\s*:\s*["']?([^"'\s]*)["']?\s*$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}
