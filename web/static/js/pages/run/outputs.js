// The Outputs section of the run page: the run variables, each with the step that output it,
// and the context the run was started with.

import {h, replace, pretty} from '../../dom.js';
import {producers} from '../../graph.js';
import {toYAML} from '../../yaml.js';
import {table} from '../common.js';
import {outputValues} from './logic.js';

// runOutputs is the Outputs section of page (see run.js): {el, paint(model)}.
export function runOutputs(page) {
  const el = h('section', {class: 'run-outputs', id: 'run-outputs', 'aria-labelledby': 'outputs-title'});
  const paint = (model) => {
    const run = page.state.run;
    const vars = outputValues(run);
    const producer = producers(model);
    const names = Object.keys(vars);
    const ctxVals = run.spec && run.spec.context;
    replace(el,
      h('h2', {id: 'outputs-title'}, 'Outputs'),
      names.length
        ? table(null, ['Name', 'Value', 'From step'], names.map((k) => [
          h('code', null, k),
          h('pre', {class: 'value'}, pretty(vars[k])),
          producer.has(k) ? h('button', {type: 'button', class: 'link', onclick: () => page.select(producer.get(k))}, producer.get(k)) : '',
        ]), {class: 'data', id: 'outputs-table'})
        : h('p', {class: 'muted'}, 'No run variables yet.'),
      ctxVals && Object.keys(ctxVals).length
        ? h('details', {class: 'context'}, h('summary', null, 'Context'), h('pre', {class: 'yaml', id: 'run-context'}, toYAML(ctxVals)))
        : null);
  };
  return {el, paint};
}
