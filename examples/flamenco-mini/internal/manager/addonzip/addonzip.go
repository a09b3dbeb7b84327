// Package addonzip embeds the Blender add-on, as packed by tools/addon-packer.
//
// The repository commits an empty flamenco-addon.zip so that go:embed works in a
// plain checkout; the manager task of flamenco-build.toml overwrites it (inside its
// container) with the real add-on, generated Python client included, before go build.
package addonzip

import _ "embed"

//go:embed flamenco-addon.zip
var zipData []byte

// FileName is the name the add-on is served under.
const FileName = "flamenco-addon.zip"

// Bytes returns the add-on zip, or nil when this binary was built from a checkout
// without packing the add-on first.
func Bytes() []byte {
	if len(zipData) == 0 {
		return nil
	}
	return zipData
}
