package sqlfile

import (
	"fmt"
	"io/fs"
	"strings"
)

// Queries maps query names to SQL text.
type Queries map[string]string

// MustLoad parses the named queries in file of fsys and panics on a malformed file. Call it at
// package level on an embedded file: a bad file is a build defect, caught by any test.
func MustLoad(fsys fs.FS, file string) Queries {
	q, err := Load(fsys, file)
	if err != nil {
		panic(err)
	}
	return q
}

// Load parses the named queries in file.
func Load(fsys fs.FS, file string) (Queries, error) {
	b, err := fs.ReadFile(fsys, file)
	if err != nil {
		return nil, err
	}
	q := Queries{}
	name := ""
	var body strings.Builder
	flush := func() error {
		if name == "" {
			return nil
		}
		sql := strings.TrimSpace(body.String())
		if sql == "" {
			return fmt.Errorf("sqlfile: %s: query %q is empty", file, name)
		}
		if _, dup := q[name]; dup {
			return fmt.Errorf("sqlfile: %s: query %q defined twice", file, name)
		}
		q[name] = sql
		body.Reset()
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "-- name:"); ok {
			if err := flush(); err != nil {
				return nil, err
			}
			name = strings.TrimSpace(n)
			continue
		}
		if name != "" {
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return q, nil
}

// Get returns the query called name; it panics when there is none, which any test catches.
func (q Queries) Get(name string) string {
	s, ok := q[name]
	if !ok {
		panic("sqlfile: no query named " + name)
	}
	return s
}
