#!/usr/bin/env bash
# vendor-web.sh: rebuilds the dashboard's vendored libraries (web/static/vendor) from pinned npm
# versions. The dashboard has no build step and loads nothing from the network: this script is run
# by hand when a version below changes, and its output is committed.
#   dagre       graph layout (layered, Sugiyama-style) of the step graph      MIT
#   codemirror  the YAML editor: YAML mode, folding, lint                      MIT
#   yaml        the designer's YAML parser (Document API: comments kept)      ISC
# Each library is bundled once into one ES module with esbuild, beside its licence.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
esbuild=0.28.2
dagre=3.1.4
yaml=2.9.1
declare -A cm=(
  [codemirror]=6.0.2
  [@codemirror/lang-yaml]=6.1.3
  [@codemirror/lint]=6.9.8
  [@codemirror/language]=6.13.1
  [@codemirror/state]=6.7.6
  [@codemirror/view]=6.44.2
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
pkgs=("esbuild@$esbuild" "@dagrejs/dagre@$dagre" "yaml@$yaml")
for p in "${!cm[@]}"; do pkgs+=("$p@${cm[$p]}"); done
npm install --save-exact --no-audit --no-fund "${pkgs[@]}" >/dev/null

out=$root/web/static/vendor
rm -rf "$out"
mkdir -p "$out/dagre-$dagre" "$out/codemirror-${cm[codemirror]}" "$out/yaml-$yaml"

bundle() { # entry (in web/vendor-src), outfile
  cp "$root/web/vendor-src/$1" "$work/$1" # beside node_modules, where esbuild resolves imports
  npx --no-install esbuild "$work/$1" --bundle --format=esm --minify --legal-comments=none --target=es2020 --outfile="$2"
}

bundle dagre.js "$out/dagre-$dagre/dagre.js"
for p in @dagrejs/dagre @dagrejs/graphlib; do
  echo "==== $p $(node -p "require('./node_modules/$p/package.json').version") ===="
  cat "node_modules/$p/LICENSE"
  echo
done >"$out/dagre-$dagre/LICENSE"

bundle codemirror.js "$out/codemirror-${cm[codemirror]}/codemirror.js"
{
  for p in codemirror @codemirror/state @codemirror/view @codemirror/language @codemirror/lang-yaml @codemirror/lint \
    @codemirror/commands @codemirror/search @codemirror/autocomplete @lezer/common @lezer/highlight @lezer/lr @lezer/yaml \
    crelt style-mod w3c-keyname @marijn/find-cluster-break; do
    [ -d "node_modules/$p" ] || continue
    v=$(node -p "require('./node_modules/$p/package.json').version")
    echo "==== $p $v ===="
    cat "node_modules/$p/LICENSE"* 2>/dev/null || echo "(licence: $(node -p "require('./node_modules/$p/package.json').license"))"
    echo
  done
} >"$out/codemirror-${cm[codemirror]}/LICENSE"
bundle yaml.js "$out/yaml-$yaml/yaml.js"
{
  echo "==== yaml $(node -p "require('./node_modules/yaml/package.json').version") ===="
  cat node_modules/yaml/LICENSE
} >"$out/yaml-$yaml/LICENSE"
npm ls --all --parseable --long 2>/dev/null | sed "s|$work/node_modules/||" | grep -v "^$work" | sort >"$out/VERSIONS"
echo "vendor-web: wrote $out" >&2
