package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Each checker holds on true ground truth and reports a violation when the truth is doctored:
// the invariants are real checks that can fail.

func TestCheckEventCounts_FlagsLostAndDoubleCountedEvents(t *testing.T) {
	sent := map[string]int{"a": 3, "b": 1}
	require.True(t, CheckEventCounts(sent, map[string]int64{"a": 3, "b": 1}).Held)
	for name, counted := range map[string]map[string]int64{
		"double counted":  {"a": 4, "b": 1},
		"lost":            {"a": 3},
		"counted unsent":  {"a": 3, "b": 1, "c": 1},
		"one short of it": {"a": 2, "b": 1},
	} {
		inv := CheckEventCounts(sent, counted)
		require.False(t, inv.Held, name)
		require.Contains(t, inv.Detail, "1 violations", name)
	}
}

func TestCheckProfiles_FlagsStaleAndMissingProfiles(t *testing.T) {
	src := map[string]CRMRow{"a": {Email: "a@x", FirstName: "F2", Country: "FR"}, "b": {Email: "b@x"}}
	require.True(t, CheckProfiles(src, map[string]CRMRow{"a": src["a"], "b": src["b"]}).Held)
	stale := CheckProfiles(src, map[string]CRMRow{"a": {Email: "a@x", FirstName: "F1", Country: "FR"}, "b": src["b"]})
	require.False(t, stale.Held)
	require.Contains(t, stale.Detail, "F1")
	require.False(t, CheckProfiles(src, map[string]CRMRow{"a": src["a"]}).Held, "b has no profile")
}

func TestCheckMessages_FlagsGapsDuplicatesStrangersAndFailures(t *testing.T) {
	aud := []string{"a", "b", "c"}
	unsub := map[string]time.Time{"c": time.Now()}
	ok := map[string]MessageRow{"a": {1, []string{"rendered"}}, "b": {1, []string{"rendered"}}, "c": {1, []string{"excluded"}}}
	require.True(t, CheckMessages(aud, unsub, ok).Held)
	for name, rows := range map[string]map[string]MessageRow{
		"gap":       {"a": {1, []string{"rendered"}}, "c": {1, []string{"rendered"}}},
		"duplicate": {"a": {2, []string{"rendered", "rendered"}}, "b": {1, []string{"rendered"}}, "c": {1, []string{"rendered"}}},
		"stranger":  {"a": {1, []string{"rendered"}}, "b": {1, []string{"rendered"}}, "c": {1, []string{"rendered"}}, "z": {1, []string{"rendered"}}},
		"failed":    {"a": {1, []string{"failed"}}, "b": {1, []string{"rendered"}}, "c": {1, []string{"rendered"}}},
	} {
		require.False(t, CheckMessages(aud, unsub, rows).Held, name)
	}
}

func TestCheckClaims_FlagsOnlyClaimsStartedAfterTheUnsubscribe(t *testing.T) {
	at := time.Now()
	unsub := map[string]time.Time{"a": at}
	require.True(t, CheckClaims(unsub, []Claim{{"a", at.Add(-time.Millisecond)}, {"b", at.Add(time.Second)}}).Held,
		"a claim that started before the unsubscribe answered may have it; others are not unsubscribed")
	inv := CheckClaims(unsub, []Claim{{"a", at.Add(time.Millisecond)}})
	require.False(t, inv.Held)
	require.True(t, strings.HasPrefix(inv.Detail, "1 violations: a: claimed at"), inv.Detail)
}

func TestCheckJobs_FlagsStuckDiscardedAndMissingJobs(t *testing.T) {
	require.True(t, CheckJobs(map[string]int{"completed": 10}).Held)
	for _, s := range []string{"running", "available", "retryable", "scheduled", "discarded", "cancelled"} {
		require.False(t, CheckJobs(map[string]int{"completed": 10, s: 1}).Held, s)
	}
	require.False(t, CheckJobs(map[string]int{}).Held, "no jobs at all")
}

func TestCheckCampaigns_FlagsUnfinishedCampaigns(t *testing.T) {
	require.True(t, CheckCampaigns(map[int64]string{1: "rendered", 2: "rendered"}).Held)
	require.False(t, CheckCampaigns(map[int64]string{1: "rendered", 2: "running"}).Held)
	require.False(t, CheckCampaigns(map[int64]string{1: "failed"}).Held)
	require.False(t, CheckCampaigns(map[int64]string{}).Held)
}

func TestReport_OKOnlyWhenEveryFaultRanAndEveryInvariantHeld(t *testing.T) {
	good := &Report{Faults: []Fault{{Name: "f"}}, Invariants: []Invariant{{Name: "i", Held: true}}}
	require.True(t, good.OK())
	require.False(t, (&Report{Faults: []Fault{{Name: "f", Err: errTest}}, Invariants: good.Invariants}).OK())
	require.False(t, (&Report{Invariants: []Invariant{{Name: "i"}}}).OK())
	require.False(t, (&Report{}).OK(), "nothing checked is no pass")
	var b strings.Builder
	good.Print(&b)
	require.Contains(t, b.String(), "INVARIANT")
}

var errTest = errString("injected")

type errString string

func (e errString) Error() string { return string(e) }
