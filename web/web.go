// Package web is the dashboard of stepflow server: a single-page application of static files
// (HTML, CSS and JavaScript modules, no build step) embedded in the binary. The server serves
// Files at `/` and the REST API of docs/api.md at `/api/v1` on the same origin; the page talks
// to nothing else.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files is the dashboard's file tree, index.html at its root.
func Files() fs.FS {
	files, err := fs.Sub(static, "static")
	if err != nil {
		// fs.Sub fails only for an invalid path, and "static" is a constant.
		panic(err)
	}
	return files
}
