// The worker that lays out a large step graph off the page's thread (Graph in graph.js): it
// gets {seq, model, collapsed} and answers {seq, L}, the layout with each node named instead of
// held, as a message carries copies.

import {layout} from './graph.js';

self.addEventListener('message', ({data}) => {
  const L = layout(data.model, {collapsed: new Set(data.collapsed)});
  L.nodes = L.nodes.map(({node, ...p}) => ({...p, name: node.name}));
  self.postMessage({seq: data.seq, L});
});
