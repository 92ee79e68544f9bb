// Entry of the vendored CodeMirror bundle (scripts/vendor-web.sh): what the YAML editor of
// static/js/pages/editor.js uses, from one copy of @codemirror/state and @codemirror/view.
export {basicSetup} from 'codemirror';
export {EditorView, keymap} from '@codemirror/view';
export {EditorState, Compartment} from '@codemirror/state';
export {yaml} from '@codemirror/lang-yaml';
export {linter, lintGutter, forceLinting, diagnosticCount} from '@codemirror/lint';
export {foldGutter, foldAll, unfoldAll} from '@codemirror/language';
