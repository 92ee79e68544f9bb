// Entry of the vendored yaml bundle (scripts/vendor-web.sh): what the designer
// (static/js/designer) uses to read YAML and to write it back keeping comments.
export {parse, parseDocument, stringify, isMap, isSeq, isScalar, Document, LineCounter} from 'yaml';
