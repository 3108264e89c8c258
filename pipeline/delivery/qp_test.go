package delivery

import (
	"bytes"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// stdQP encodes pieces with the standard library's writer, as go-message does.
func stdQP(t testing.TB, pieces ...string) string {
	var buf bytes.Buffer
	w := quotedprintable.NewWriter(&buf)
	for _, p := range pieces {
		_, err := w.Write([]byte(p))
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	return buf.String()
}

func fastQP(pieces ...string) string {
	var e qpEncoder
	var dst []byte
	for _, p := range pieces {
		dst = e.append(dst, p)
	}
	return string(e.close(dst))
}

var qpCases = []string{
	"",
	"plain ascii",
	"caf\u00e9 \u00fcber 100% = \u20ac5",
	strings.Repeat("x", 75),
	strings.Repeat("x", 76),
	strings.Repeat("x", 200),
	strings.Repeat("x", 73) + "\u00e9\u00e9",
	strings.Repeat("x", 74) + "=",
	"trailing space \r\nand tab\t\nend ",
	"a\r\n\r\nb\n\nc\r\rd",
	"\r\xff\n after a CR, an escape, then a LF",
	strings.Repeat("ab ", 40) + "\n" + strings.Repeat(" ", 80) + "\t",
	"<td style=\"padding:16px\">Hi &amp; welcome</td>\n",
	"\x00\x01\x7f\x80\xfe",
}

// checkQP checks the encoding of pieces: the standard library's bytes where its CR quirk
// cannot arise (no CR in the input), and for every input a decoding that gives the input back
// with each CR, LF and CRLF as one CRLF, in lines of at most 76 characters.
func checkQP(t testing.TB, pieces ...string) {
	t.Helper()
	got := fastQP(pieces...)
	in := strings.Join(pieces, "")
	if !strings.Contains(in, "\r") {
		require.Equal(t, stdQP(t, pieces...), got, "%q", pieces)
	}
	for _, line := range strings.Split(got, "\r\n") {
		require.LessOrEqual(t, len(line), 76, "%q", pieces)
	}
	back, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(got)))
	require.NoError(t, err)
	want := strings.NewReplacer("\r\n", "\r\n", "\r", "\r\n", "\n", "\r\n").Replace(in)
	require.Equal(t, want, string(back), "%q", pieces)
}

func TestQP_MatchesTheStandardLibrary(t *testing.T) {
	t.Parallel()
	require.Equal(t, "\r\n=C3=A9\r\n", fastQP("\r\u00e9\n"), "the line break the standard library loses")
	for _, c := range qpCases {
		checkQP(t, c)
		// Written in pieces, as a preheader and the html are: the state carries over.
		for cut := 0; cut <= len(c); cut += max(1, len(c)/7) {
			checkQP(t, c[:cut], c[cut:])
		}
	}
	// Every line of the output is at most 76 characters, and it decodes to the input.
	long := strings.Repeat("Gr\u00fc\u00dfe aus K\u00f6ln = Cologne, \t", 50) + "\r\n" + strings.Repeat("y", 500)
	out := fastQP(long)
	for _, line := range strings.Split(out, "\r\n") {
		require.LessOrEqual(t, len(line), 76)
	}
	back, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(out)))
	require.NoError(t, err)
	require.Equal(t, long, string(back))
}

func FuzzQP_MatchesTheStandardLibrary(f *testing.F) {
	for _, c := range qpCases {
		f.Add(c, len(c)/2)
	}
	f.Fuzz(func(t *testing.T, s string, cut int) {
		if len(s) > 1<<16 {
			return
		}
		cut = min(max(cut, 0), len(s))
		checkQP(t, s[:cut], s[cut:])
	})
}

func BenchmarkQP(b *testing.B) {
	html := strings.Repeat("<td class=\"col\" style=\"padding:16px 16px 16px 0;\">Gr\u00fc\u00dfe, \u20ac 49,00</td>\n", 150)
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(html)))
		for b.Loop() {
			stdQP(b, html)
		}
	})
	b.Run("tailor", func(b *testing.B) {
		b.SetBytes(int64(len(html)))
		dst := make([]byte, 0, 2*len(html))
		for b.Loop() {
			var e qpEncoder
			dst = e.close(e.append(dst[:0], html))
		}
	})
}
