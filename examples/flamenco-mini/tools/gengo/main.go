// Command gengo reads the Flamenco Mini OpenAPI spec and writes Go code for it:
// operation IDs, HTTP methods and paths as constants (paths in the ServeMux
// pattern syntax, which matches OpenAPI's {param}), path builders, and one Go
// type per schema.
//
// It understands the YAML subset the spec is written in (block mappings and
// sequences, flow sequences, quoted scalars), nothing more. Standard library only.
//
// Usage: go run ./tools/gengo SPEC.yaml OUT.go
package main

import (
	"bytes"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gengo SPEC.yaml OUT.go")
		os.Exit(2)
	}
	src, err := os.ReadFile(os.Args[1])
	check(err)
	doc, err := parseYAML(string(src))
	check(err)
	code, err := generate(doc, filepath.Base(os.Args[1]))
	check(err)
	check(os.MkdirAll(filepath.Dir(os.Args[2]), 0o755))
	check(os.WriteFile(os.Args[2], code, 0o644))
	fmt.Printf("gengo: wrote %s (%d bytes)\n", os.Args[2], len(code))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "gengo:", err)
		os.Exit(1)
	}
}

// ---- a small YAML subset parser -------------------------------------------

type node = any // map[string]any (with key order in "__order"), []any, or string

type line struct {
	num    int
	indent int
	text   string
}

func parseYAML(src string) (node, error) {
	var lines []line
	for i, raw := range strings.Split(src, "\n") {
		raw = strings.TrimRight(stripComment(raw), " \t\r")
		text := strings.TrimLeft(raw, " ")
		if text == "" {
			continue
		}
		lines = append(lines, line{i + 1, len(raw) - len(text), text})
	}
	p := &parser{lines: lines}
	if len(lines) == 0 {
		return map[string]any{}, nil
	}
	n, err := p.block(lines[0].indent)
	if err == nil && p.pos < len(p.lines) {
		err = fmt.Errorf("line %d: unexpected indentation", p.lines[p.pos].num)
	}
	return n, err
}

func stripComment(s string) string {
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || s[i-1] == ' '):
			return s[:i]
		}
	}
	return s
}

type parser struct {
	lines []line
	pos   int
}

func (p *parser) block(indent int) (node, error) {
	if strings.HasPrefix(p.lines[p.pos].text, "- ") || p.lines[p.pos].text == "-" {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

func (p *parser) sequence(indent int) (node, error) {
	var out []any
	for p.pos < len(p.lines) && p.lines[p.pos].indent == indent && strings.HasPrefix(p.lines[p.pos].text+" ", "- ") {
		l := p.lines[p.pos]
		item := strings.TrimSpace(strings.TrimPrefix(l.text, "-"))
		switch {
		case item == "":
			p.pos++
			if p.pos >= len(p.lines) || p.lines[p.pos].indent <= indent {
				out = append(out, "")
				continue
			}
			n, err := p.block(p.lines[p.pos].indent)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		case isKeyLine(item):
			// "- key: value" starts a mapping whose keys sit two columns further in.
			p.lines[p.pos] = line{l.num, indent + 2, item}
			n, err := p.mapping(indent + 2)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		default:
			out = append(out, scalar(item))
			p.pos++
		}
	}
	return out, nil
}

func isKeyLine(s string) bool {
	k, _, ok := splitKey(s)
	return ok && k != ""
}

// splitKey splits `key: value` (key possibly quoted).
func splitKey(s string) (key, value string, ok bool) {
	if s[0] == '"' || s[0] == '\'' {
		end := strings.IndexByte(s[1:], s[0])
		if end < 0 {
			return "", "", false
		}
		rest := s[end+2:]
		if rest != ":" && !strings.HasPrefix(rest, ": ") {
			return "", "", false
		}
		return s[1 : end+1], strings.TrimSpace(strings.TrimPrefix(rest, ":")), true
	}
	if strings.HasSuffix(s, ":") && !strings.Contains(s, ": ") {
		return s[:len(s)-1], "", true
	}
	i := strings.Index(s, ": ")
	if i < 0 {
		return "", "", false
	}
	return s[:i], strings.TrimSpace(s[i+2:]), true
}

func (p *parser) mapping(indent int) (node, error) {
	out := map[string]any{}
	var order []string
	for p.pos < len(p.lines) && p.lines[p.pos].indent == indent {
		l := p.lines[p.pos]
		key, value, ok := splitKey(l.text)
		if !ok {
			return nil, fmt.Errorf("line %d: expected `key: value`, got %q", l.num, l.text)
		}
		p.pos++
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", l.num, key)
		}
		order = append(order, key)
		if value != "" {
			out[key] = scalar(value)
			continue
		}
		if p.pos < len(p.lines) {
			next := p.lines[p.pos]
			if next.indent > indent || (next.indent == indent && strings.HasPrefix(next.text, "- ")) {
				n, err := p.block(next.indent)
				if err != nil {
					return nil, err
				}
				out[key] = n
				continue
			}
		}
		out[key] = ""
	}
	out["__order"] = order
	return out, nil
}

func scalar(s string) any {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		var items []any
		for _, part := range strings.Split(s[1:len(s)-1], ",") {
			if part = strings.TrimSpace(part); part != "" {
				items = append(items, unquote(part))
			}
		}
		return items
	}
	return unquote(s)
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// ---- helpers to walk the tree ---------------------------------------------

func get(n node, path ...string) node {
	for _, k := range path {
		m, ok := n.(map[string]any)
		if !ok {
			return nil
		}
		n = m[k]
	}
	return n
}

func str(n node, path ...string) string {
	s, _ := get(n, path...).(string)
	return s
}

func keys(n node) []string {
	m, _ := n.(map[string]any)
	order, _ := m["__order"].([]string)
	return order
}

func list(n node) []any {
	l, _ := n.([]any)
	return l
}

// ---- code generation ------------------------------------------------------

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

type operation struct {
	id, method, path string
	params           []string
}

func generate(doc node, specName string) ([]byte, error) {
	var ops []operation
	for _, path := range keys(get(doc, "paths")) {
		item := get(doc, "paths", path)
		for _, method := range httpMethods {
			op := get(item, method)
			if op == nil {
				continue
			}
			id := str(op, "operationId")
			if id == "" {
				return nil, fmt.Errorf("%s %s has no operationId", method, path)
			}
			o := operation{id: id, method: strings.ToUpper(method), path: path}
			for _, p := range list(get(op, "parameters")) {
				if str(p, "in") == "path" {
					o.params = append(o.params, str(p, "name"))
				}
			}
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].id < ops[j].id })

	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by gengo from %s. DO NOT EDIT.\n\n", specName)
	b.WriteString("// Package api is the Go side of the Flamenco Mini API: operations, paths and payload types.\npackage api\n\n")
	needTime := strings.Contains(fmt.Sprint(doc), "date-time")
	b.WriteString("import (\n\t\"net/url\"\n\t\"strings\"\n")
	if needTime {
		b.WriteString("\t\"time\"\n")
	}
	b.WriteString(")\n\n")
	fmt.Fprintf(&b, "// SpecTitle and SpecVersion come from the spec's info block.\nconst (\n\tSpecTitle = %q\n\tSpecVersion = %q\n)\n\n",
		str(doc, "info", "title"), str(doc, "info", "version"))

	b.WriteString("// Operation IDs.\nconst (\n")
	for _, o := range ops {
		fmt.Fprintf(&b, "\tOp%s = %q\n", export(o.id), o.id)
	}
	b.WriteString(")\n\n// Paths, with {param} placeholders.\nconst (\n")
	for _, o := range ops {
		fmt.Fprintf(&b, "\tPath%s = %q\n", export(o.id), o.path)
	}
	b.WriteString(")\n\n// Patterns for http.ServeMux (Go 1.22+): method and path.\nconst (\n")
	for _, o := range ops {
		fmt.Fprintf(&b, "\tPattern%s = %q\n", export(o.id), o.method+" "+o.path)
	}
	b.WriteString(")\n\n// Operation describes one API operation.\ntype Operation struct {\n\tID, Method, Path string\n}\n\n")
	b.WriteString("// Operations lists every operation in the spec, sorted by ID.\nvar Operations = []Operation{\n")
	for _, o := range ops {
		fmt.Fprintf(&b, "\t{ID: Op%[1]s, Method: %[2]q, Path: Path%[1]s},\n", export(o.id), o.method)
	}
	b.WriteString("}\n\n")
	for _, o := range ops {
		var args, repl []string
		for _, p := range o.params {
			args = append(args, goIdent(p)+" string")
			repl = append(repl, fmt.Sprintf("%q, url.PathEscape(%s)", "{"+p+"}", goIdent(p)))
		}
		fmt.Fprintf(&b, "// %sPath returns the path of %s.\nfunc %sPath(%s) string {\n", export(o.id), o.id, export(o.id), strings.Join(args, ", "))
		if len(repl) == 0 {
			fmt.Fprintf(&b, "\treturn Path%s\n}\n\n", export(o.id))
		} else {
			fmt.Fprintf(&b, "\treturn strings.NewReplacer(%s).Replace(Path%s)\n}\n\n", strings.Join(repl, ", "), export(o.id))
		}
	}
	if len(ops) > 0 && !strings.Contains(b.String(), "url.PathEscape") {
		b.WriteString("var _ = url.PathEscape\n")
	}
	if !strings.Contains(b.String(), "strings.NewReplacer") {
		b.WriteString("var _ = strings.NewReplacer\n")
	}

	schemas := get(doc, "components", "schemas")
	for _, name := range keys(schemas) {
		s := get(schemas, name)
		desc := str(s, "description")
		if desc == "" {
			desc = "is the " + name + " schema."
		}
		fmt.Fprintf(&b, "// %s %s\n", name, desc)
		switch {
		case str(s, "type") == "string" && list(get(s, "enum")) != nil:
			fmt.Fprintf(&b, "type %s string\n\n// Values of %s.\nconst (\n", name, name)
			for _, v := range list(get(s, "enum")) {
				fmt.Fprintf(&b, "\t%s%s %s = %q\n", name, export(v.(string)), name, v)
			}
			b.WriteString(")\n\n")
		case str(s, "type") == "object":
			required := map[string]bool{}
			for _, r := range list(get(s, "required")) {
				required[r.(string)] = true
			}
			fmt.Fprintf(&b, "type %s struct {\n", name)
			for _, prop := range keys(get(s, "properties")) {
				t, err := goType(get(s, "properties", prop))
				if err != nil {
					return nil, fmt.Errorf("schema %s.%s: %w", name, prop, err)
				}
				tag := prop
				if !required[prop] {
					tag += ",omitempty"
				}
				fmt.Fprintf(&b, "\t%s %s `json:%q`\n", export(prop), t, tag)
			}
			b.WriteString("}\n\n")
		default:
			t, err := goType(s)
			if err != nil {
				return nil, fmt.Errorf("schema %s: %w", name, err)
			}
			fmt.Fprintf(&b, "type %s %s\n\n", name, t)
		}
	}
	return format.Source(b.Bytes())
}

func goType(s node) (string, error) {
	if ref := str(s, "$ref"); ref != "" {
		return ref[strings.LastIndex(ref, "/")+1:], nil
	}
	switch str(s, "type") {
	case "string":
		if str(s, "format") == "date-time" {
			return "time.Time", nil
		}
		return "string", nil
	case "integer":
		return "int", nil
	case "number":
		return "float64", nil
	case "boolean":
		return "bool", nil
	case "array":
		t, err := goType(get(s, "items"))
		return "[]" + t, err
	case "object":
		return "map[string]any", nil
	}
	return "", fmt.Errorf("unsupported schema %v", s)
}

var initialisms = map[string]string{"id": "ID", "url": "URL", "http": "HTTP", "api": "API", "json": "JSON"}

// export turns snake_case, kebab-case or camelCase into an exported Go name.
func export(s string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '_' || r == '-' || r == ' ' }) {
		if up, ok := initialisms[strings.ToLower(part)]; ok {
			b.WriteString(up)
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// goIdent turns worker_id into workerID.
func goIdent(s string) string {
	e := export(s)
	for i, r := range e {
		if r >= 'a' && r <= 'z' {
			if i > 1 {
				i--
			}
			return strings.ToLower(e[:i]) + e[i:]
		}
	}
	return strings.ToLower(e)
}
