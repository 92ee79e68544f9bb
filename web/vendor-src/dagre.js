// Entry of the vendored dagre bundle (scripts/vendor-web.sh): the layout and the graph type.
export {layout, graphlib} from '@dagrejs/dagre';
