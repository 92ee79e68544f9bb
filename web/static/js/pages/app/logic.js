// The Application pages' decisions, without the DOM (tested under Node by web/jstest): an
// Application's phase and health counts, its components' health per cluster, the run that
// delivers its latest revision, and what each revision changed.

// PHASE_CLASS maps an Application's phase (KubeVela's words) to the run phase whose colour
// its badge takes.
const PHASE_CLASS = {
  running: 'succeeded',
  runningWorkflow: 'running',
  workflowSuspending: 'suspending',
  workflowFailed: 'failed',
  unhealthy: 'failed',
  deleting: 'terminated',
};

// appPhase is the Application's phase, '' before it has one.
export function appPhase(app) {
  return (app && app.status && app.status.status) || '';
}

// phaseClass is the colour class of an Application's phase: one of the run phases.
export function phaseClass(phase) {
  return PHASE_CLASS[phase] || 'pending';
}

// healthCounts counts the components' places (a component in one cluster and namespace) that
// are healthy and unhealthy; a trait that is not healthy makes its place unhealthy.
export function healthCounts(app) {
  const services = (app && app.status && Array.isArray(app.status.services) && app.status.services) || [];
  let healthy = 0;
  let unhealthy = 0;
  for (const s of services) {
    if (placeHealthy(s)) healthy++;
    else unhealthy++;
  }
  return {healthy, unhealthy};
}

function placeHealthy(s) {
  const traits = Array.isArray(s.traits) ? s.traits : [];
  return !!s.healthy && traits.every((t) => t && t.healthy);
}

// componentRows lists every component of the spec, in its order, with its places: {name,
// type, traits (types), places: [{cluster, namespace, healthy, message, traits}]}. A component
// the status does not report yet has no places; one the status reports that the spec no longer
// has (a revision being replaced) comes last.
export function componentRows(app) {
  const comps = (app && app.spec && Array.isArray(app.spec.components) && app.spec.components) || [];
  const services = (app && app.status && Array.isArray(app.status.services) && app.status.services) || [];
  const rows = [];
  const byName = new Map();
  for (const c of comps) {
    if (!c || !c.name || byName.has(c.name)) continue;
    const row = {name: c.name, type: c.type || '', traits: (Array.isArray(c.traits) ? c.traits : []).map((t) => t && t.type).filter(Boolean), places: []};
    byName.set(c.name, row);
    rows.push(row);
  }
  for (const s of services) {
    if (!s || !s.name) continue;
    let row = byName.get(s.name);
    if (!row) {
      row = {name: s.name, type: '', traits: [], places: []};
      byName.set(s.name, row);
      rows.push(row);
    }
    row.places.push({
      cluster: s.cluster || 'local',
      namespace: s.namespace || '',
      healthy: placeHealthy(s),
      message: s.message || '',
      traits: (Array.isArray(s.traits) ? s.traits : []).filter(Boolean).map((t) => ({type: t.type || '', healthy: !!t.healthy, message: t.message || ''})),
    });
  }
  return rows;
}

// latestRun names the run delivering the Application's latest revision: the revision's run as
// the revisions list has it, else the revision's name (runs are named as their revisions).
export function latestRun(app, revisions) {
  const latest = app && app.status && app.status.latestRevision;
  if (!latest) return '';
  for (const r of revisions || []) {
    if (r && r.number === latest.revision && r.run) return r.run;
  }
  return latest.name || '';
}

// revisionTime is when a revision was made.
export function revisionTime(rev) {
  return (rev && rev.object && rev.object.metadata && rev.object.metadata.creationTimestamp) || '';
}

// revisionPhase is the phase its delivery run ended in (or is in), '' when not known.
export function revisionPhase(rev) {
  const w = rev && rev.object && rev.object.status && rev.object.status.workflow;
  if (rev && rev.object && rev.object.status && rev.object.status.succeeded) return 'succeeded';
  return (w && w.status) || '';
}

function specOf(rev) {
  return (rev && rev.object && rev.object.spec && rev.object.spec.application && rev.object.spec.application.spec) || {};
}

// stable writes a value as JSON with its keys sorted, so that equal values compare equal.
function stable(v) {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().filter((k) => v[k] !== undefined).map((k) => `${JSON.stringify(k)}:${stable(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v === undefined ? null : v);
}

// revisionChanges says what a revision changed from the one before it, in a few words:
// "first revision", "same spec as v1" (a rollback, or a spec edited back), components
// added, removed and changed, and policies or workflow changed. revisions are the list, oldest
// first; i is the index of the one to describe.
export function revisionChanges(revisions, i) {
  const rev = revisions[i];
  if (!rev) return [];
  if (i === 0) return ['first revision'];
  const out = [];
  for (let j = 0; j < i; j++) {
    const earlier = revisions[j];
    if (earlier && rev.hash && earlier.hash === rev.hash && j !== i - 1) {
      out.push(`same spec as v${earlier.number}`);
      break;
    }
  }
  const before = specOf(revisions[i - 1]);
  const after = specOf(rev);
  const comps = (spec) => new Map((Array.isArray(spec.components) ? spec.components : []).filter((c) => c && c.name).map((c) => [c.name, stable(c)]));
  const a = comps(before);
  const b = comps(after);
  const added = [...b.keys()].filter((n) => !a.has(n));
  const removed = [...a.keys()].filter((n) => !b.has(n));
  const changed = [...b.keys()].filter((n) => a.has(n) && a.get(n) !== b.get(n));
  if (added.length) out.push(`added ${added.join(', ')}`);
  if (removed.length) out.push(`removed ${removed.join(', ')}`);
  if (changed.length) out.push(`changed ${changed.join(', ')}`);
  if (stable(before.policies || []) !== stable(after.policies || [])) out.push('policies changed');
  if (stable(before.workflow || null) !== stable(after.workflow || null)) out.push('workflow changed');
  if (!out.length) out.push('definitions changed');
  return out;
}

// resourceText names an applied object: "apps/v1 Deployment shop/web".
export function resourceText(r) {
  const where = r.namespace ? `${r.namespace}/${r.name || ''}` : r.name || '';
  return [r.apiVersion, r.kind, where].filter(Boolean).join(' ');
}

// rollbackReason says why a revision cannot be rolled back to, '' when it can: the latest
// revision is what is delivered already.
export function rollbackReason(app, rev) {
  const latest = app && app.status && app.status.latestRevision;
  if (latest && rev && latest.revision === rev.number) return 'This is the revision delivered now.';
  return '';
}
