package tracking_test

import (
	"testing"

	"github.com/tailor-email/tailor/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
