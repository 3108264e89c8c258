package templates

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzFromFiles feeds arbitrary manifests and parts to the parser: it must never panic, every
// error must be a *SyntaxError naming a file (and a line inside it when it has one), and a
// template that parses must parse again from its Files.
func FuzzFromFiles(f *testing.F) {
	welcome := map[string]string{}
	for _, name := range []string{FileManifest, FileSubject, FileHTML, FileText} {
		b, err := os.ReadFile("examples/welcome/" + name)
		require.NoError(f, err)
		welcome[name] = string(b)
	}
	f.Add(welcome[FileManifest], welcome[FileSubject], welcome[FileHTML])
	for _, m := range []string{
		"name: x\nversion: 1\n",
		"name: x\nversion: 0\n",
		"name: x\nversion: one\n",
		"name: x\nversion: 1\ncontnet: {}\n",
		"name: x\nversion: 1\ncontent:\n  a: {url: 'http://h/{{ customer.id'}\n",
		"name: x\nversion: 1\ncontent:\n  a: {url: 'http://h/', timeout: soon, retries: 9, on_failure: explode}\n",
		"name: x\nversion: 1\nvariants:\n  - {name: a, weight: 0}\n  - {name: a, weight: -1, html: '{% if %}'}\n",
		"name: x\nversion: 1\ndefaults: {a: [1, {b: c}]}\n",
		"name: [\n",
		"\t- :\n",
		"",
		"---\n...\n",
		"name: x\nversion: 1\n" + strings.Repeat("#", MaxManifestSize),
	} {
		f.Add(m, "Hi {{ customer.first_name }}", "<p>{{ customer.first_name | capitalize }}</p>")
	}
	f.Add("name: x\nversion: 1\n", "{{ customer.first_name", "{% for %}")
	f.Add("name: x\nversion: 1\n", "0", "{{ 100000000000000000000000000000000}}") // liquid's lexer panicked on it
	f.Add("name: x\nversion: 1\n", "{{ x | nosuch }}", "{% capture a %}<b>{% endcapture %}{{ a }}{% raw %}{{{% endraw %}")
	f.Fuzz(func(t *testing.T, manifest, subject, html string) {
		files := map[string]string{FileManifest: manifest, FileSubject: subject, FileHTML: html, FileText: "text"}
		tpl, err := FromFiles(files)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *SyntaxError", err, err)
			}
			content, ok := files[se.File]
			if !ok && !strings.HasPrefix(se.File, FileManifest+" (variant") {
				t.Fatalf("error names file %q, which the template does not have: %v", se.File, err)
			}
			if ok && se.Line > strings.Count(content, "\n")+2 {
				t.Fatalf("error line %d is past the end of %s: %v", se.Line, se.File, err)
			}
			return
		}
		again, err := FromFiles(tpl.Files())
		if err != nil {
			t.Fatalf("a parsed template does not parse from its files: %v", err)
		}
		if again.Checksum() != tpl.Checksum() {
			t.Fatal("checksum changed")
		}
	})
}

// FuzzDecodeContent feeds arbitrary bodies to the content decoder: no panic, and what it
// accepts is one JSON value.
func FuzzDecodeContent(f *testing.F) {
	for _, s := range []string{recsBody, `{}`, `[]`, `null`, `1e400`, `{"a":1} {"b":2}`, `{"a":`, "\xff", `"\u0000"`, ` {"a": [1, 2, {"b": null}]} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := decodeContent(body)
		if err != nil {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("decoded value does not marshal: %v", err)
		}
	})
}

func TestFromFiles_SizeLimits(t *testing.T) {
	t.Parallel()
	base := func() map[string]string {
		return map[string]string{FileManifest: "name: x\nversion: 1\n", FileSubject: "s", FileHTML: "h", FileText: "t"}
	}
	big := base()
	big[FileHTML] = strings.Repeat("a", MaxPartSize+1)
	_, err := FromFiles(big)
	var se *SyntaxError
	require.ErrorAs(t, err, &se)
	require.Equal(t, FileHTML, se.File)
	require.Contains(t, se.Msg, "over the 512 KB limit")

	atLimit := base()
	atLimit[FileHTML] = strings.Repeat("a", MaxPartSize)
	_, err = FromFiles(atLimit)
	require.NoError(t, err)

	bigManifest := base()
	bigManifest[FileManifest] += strings.Repeat("#", MaxManifestSize)
	_, err = FromFiles(bigManifest)
	require.ErrorAs(t, err, &se)
	require.Equal(t, FileManifest, se.File)
	require.Contains(t, se.Msg, "over the 64 KB limit for the manifest")

	// Load refuses before reading the file whole.
	dir := writeFolder(t, big)
	_, err = Load(dir)
	require.ErrorContains(t, err, "html: 513 KB is over the 512 KB limit")
	errs := Validate(dir, ValidateConfig{}).Errors
	require.Len(t, errs, 1)
	require.ErrorAs(t, errs[0], &se)
}
