// Command addon-packer zips the Blender add-on for the manager to embed and serve.
//
// Usage: go run ./tools/addon-packer -src addon/flamenco -o internal/manager/addonzip/flamenco-addon.zip
//
// Entries are named <basename of src>/..., sorted, with a fixed timestamp, so the
// same sources always give the same zip.
package main

import (
	"archive/zip"
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	src := flag.String("src", "addon/flamenco", "add-on package folder")
	out := flag.String("o", "flamenco-addon.zip", "zip file to write")
	flag.Parse()
	if err := pack(*src, *out); err != nil {
		fmt.Fprintln(os.Stderr, "addon-packer:", err)
		os.Exit(1)
	}
}

func pack(src, out string) error {
	var files []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && (name == "__pycache__" || (p != src && strings.HasPrefix(name, "."))) {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && !strings.HasSuffix(name, ".pyc") && !strings.HasPrefix(name, ".") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no files under %s", src)
	}
	sort.Strings(files)

	stamp := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	prefix := filepath.Base(filepath.Clean(src))
	for _, f := range files {
		rel, err := filepath.Rel(src, f)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		hdr := &zip.FileHeader{Name: path.Join(prefix, filepath.ToSlash(rel)), Method: zip.Deflate, Modified: stamp}
		hdr.SetMode(0o644)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Printf("addon-packer: %d files, %d bytes -> %s\n", len(files), buf.Len(), out)
	return nil
}
