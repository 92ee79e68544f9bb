// The Steps section of the run page: the step graph with its zoom controls, the indicator of
// the event stream, and the legend of the phase colours.

import {h} from '../../dom.js';
import {PHASES} from './logic.js';

// stepsSection frames graph (a Graph of ../../graph.js) with live, the stream's indicator.
export function stepsSection(graph, live) {
  return h('section', {class: 'graph-section card', 'aria-labelledby': 'steps-title'},
    h('div', {class: 'section-head'}, h('h2', {id: 'steps-title'}, 'Steps'), h('div', {class: 'head-tools'}, graph.controls, live)),
    h('div', {class: 'graph-wrap', id: 'graph'}, graph.el),
    legend(),
    h('p', {class: 'muted small hint'}, 'Select a step with the mouse, or with Tab, the arrow keys and Enter.'));
}

function legend() {
  return h('ul', {class: 'legend', 'aria-label': 'Phase colours'}, PHASES.map((p) => h('li', null, h('span', {class: `swatch phase-${p}`, 'aria-hidden': 'true'}), p)));
}
