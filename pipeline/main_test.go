package pipeline

import (
	"flag"
	"os"
	"testing"

	"github.com/tailor-email/tailor/internal/testenv"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Fuzzing (go test -fuzz FuzzDecodeEvent) needs no backends: skip starting a local stack in
	// the coordinator and in every fuzz worker.
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	// go test -short (make unit) runs only the tests that need no backends.
	if testing.Short() {
		os.Exit(m.Run())
	}
	testenv.Main(m)
}

// integration skips a test that needs the local stack under -short.
func integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack")
	}
}
