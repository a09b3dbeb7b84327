// Package web holds the built webapp, embedded into the manager.
//
// web/static is the output folder of the webapp-static task (node web/app/build.mjs).
// The repository commits only web/static/.keep, so that this go:embed works in a
// plain checkout too (a directory embed needs at least one file, and "all:" lets a
// dot-file count). build.mjs writes .keep again into the folder it produces, so the
// built folder that replaces web/static still holds it and the checkout stays clean.
package web

import (
	"embed"
	"io/fs"
)

//go:embed all:static
var staticFS embed.FS

// Static returns the built webapp, rooted at web/static.
func Static() fs.FS {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	return sub
}

// Built reports whether the webapp was built into this binary, or whether only the
// placeholder from a plain checkout is there.
func Built() bool {
	_, err := fs.Stat(Static(), "index.html")
	return err == nil
}
