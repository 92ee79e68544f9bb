// The trigger form's decisions without the DOM: what a form's fields ask the API for, and what
// a trigger fills the form with when it is edited.

// requestOf turns the form's fields (strings and a boolean, as the inputs hold them) into the
// body of POST /templates/{ns}/{name}/triggers or PUT /triggers/{id}. It throws an Error
// naming the field when one cannot be read.
export function requestOf(f) {
  const body = {type: f.type};
  const ctx = (f.context || '').trim();
  if (ctx) {
    let v;
    try {
      v = JSON.parse(ctx);
    } catch (e) {
      throw new Error(`Context: not JSON (${e.message}).`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('Context: a JSON object of the keys the runs get, such as {"env": "prod"}.');
    body.context = v;
  }
  if (f.type === 'cloudevents') {
    // The server checks that it is a CUE expression, and says where it is not.
    const filter = (f.filter || '').trim();
    if (filter) body.filter = filter;
  }
  if (f.type !== 'cron') return body;
  const schedules = (f.schedules || '').split('\n').map((s) => s.trim()).filter(Boolean);
  if (!schedules.length) throw new Error('Schedules: at least one, such as 0 2 * * * or @hourly.');
  body.schedules = schedules;
  if ((f.timeZone || '').trim()) body.timeZone = f.timeZone.trim();
  if (f.concurrencyPolicy) body.concurrencyPolicy = f.concurrencyPolicy;
  const deadline = (f.startingDeadlineSeconds || '').trim();
  if (deadline) {
    if (!/^\d+$/.test(deadline)) throw new Error('Starting deadline: whole seconds, 0 or more.');
    body.startingDeadlineSeconds = Number(deadline);
  }
  if (f.paused) body.paused = true;
  return body;
}

// fieldsOf is what the form shows for a trigger being edited.
export function fieldsOf(t) {
  const schedules = Array.isArray(t.schedules) && t.schedules.length ? t.schedules : t.schedule ? [t.schedule] : [];
  return {
    type: t.type,
    schedules: schedules.join('\n'),
    timeZone: t.timeZone || '',
    concurrencyPolicy: t.concurrencyPolicy || 'Allow',
    startingDeadlineSeconds: t.startingDeadlineSeconds === undefined || t.startingDeadlineSeconds === null ? '' : String(t.startingDeadlineSeconds),
    paused: !!t.paused,
    context: t.context && Object.keys(t.context).length ? JSON.stringify(t.context, null, 2) : '',
    filter: t.filter || '',
  };
}
