package cdc

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// A change of a transaction: the customer and its WAL position; "TRUNCATE" for a barrier.
type change struct {
	id  string
	pos uint64
}

// assign gives the changes their generations as a stream would (one segment boundary per
// SegmentChanges changes or SegmentBytes of WAL).
func assign(changes []change) []int {
	var g generations
	g.reset()
	out := make([]int, len(changes))
	for i, c := range changes {
		g.next(c.pos)
		if c.id == "TRUNCATE" {
			out[i] = g.barrier()
		} else {
			out[i] = g.of(c.id)
		}
	}
	return out
}

// pass is n changes, one per customer c0 ... c(n-1), starting at WAL position pos, 100 bytes apart.
func pass(n int, pos uint64) []change {
	out := make([]change, n)
	for i := range out {
		out[i] = change{id: "c" + strconv.Itoa(i), pos: pos + uint64(i)*100}
	}
	return out
}

func TestGenerations_OneVersionPerCustomerUnlessItReappearsInALaterSegment(t *testing.T) {
	t.Parallel()
	// One pass over 3 000 customers: 3 segments, each customer once: everything at generation 0.
	gens := assign(pass(3000, 1000))
	for i, g := range gens {
		require.Zero(t, g, "change %d", i)
	}

	// The same customer twice in one segment: one generation (the changes merge in memory).
	gens = assign([]change{{"a", 10}, {"b", 20}, {"a", 30}})
	require.Equal(t, []int{0, 0, 0}, gens)

	// A second pass over the same customers: each change one generation above its customer's
	// first, also for customers that reappear in the very next segment.
	two := append(pass(1500, 1000), pass(1500, 1_000_000)...)
	gens = assign(two)
	for i := range 1500 {
		require.Equal(t, 0, gens[i], "first pass, change %d", i)
		require.Equal(t, 1, gens[1500+i], "second pass, change %d", i)
	}
}

func TestGenerations_SegmentsEndAfterSegmentBytesOfWAL(t *testing.T) {
	t.Parallel()
	gens := assign([]change{{"a", 100}, {"a", 100 + SegmentBytes - 1}, {"a", 100 + SegmentBytes}, {"a", 100 + SegmentBytes + 1}})
	require.Equal(t, []int{0, 0, 1, 1}, gens)
}

func TestGenerations_TruncateIsAboveEverythingBeforeAndBelowEverythingAfter(t *testing.T) {
	t.Parallel()
	changes := append(pass(1000, 1000), pass(200, 200_000)...)
	changes = append(changes, change{"TRUNCATE", 300_000}, change{"c1", 300_100}, change{"z", 300_200})
	gens := assign(changes)
	barrier := gens[1200]
	require.Equal(t, 2, barrier, "c0 ... c199 reached generation 1 in the second segment")
	require.Equal(t, []int{3, 3}, gens[1201:], "after the barrier, old and new customers alike")

	first := assign([]change{{"TRUNCATE", 10}, {"a", 20}})
	require.Equal(t, []int{0, 1}, first)
}

func TestGenerations_RunOutIntoHoldingTheRestOfTheTransaction(t *testing.T) {
	t.Parallel()
	// Customer "hot" in every segment: generations 0 ... genMax, then held.
	var changes []change
	pos := uint64(1000)
	for seg := 0; seg <= genMax+2; seg++ {
		changes = append(changes, change{"hot", pos})
		for i := 1; i < SegmentChanges; i++ {
			changes = append(changes, change{"cold" + strconv.Itoa(seg), pos + uint64(i)})
		}
		pos += SegmentChanges
	}
	changes = append(changes, change{"TRUNCATE", pos}, change{"late", pos + 1})
	gens := assign(changes)
	for seg := 0; seg <= genMax; seg++ {
		require.Equal(t, seg, gens[seg*SegmentChanges], "segment %d", seg)
	}
	require.Equal(t, genHeld, gens[(genMax+1)*SegmentChanges], "out of generations")
	require.Equal(t, genHeld, gens[(genMax+1)*SegmentChanges+1], "everything after is held")
	require.Equal(t, []int{genHeldBarrier, genHeld}, gens[len(gens)-2:])
	require.Less(t, 1+genHeld, commitRecordMin, "every version stays below the next transaction's")

	// TRUNCATEs alone use generations up too.
	var truncs []change
	for i := range genMax + 1 {
		truncs = append(truncs, change{"TRUNCATE", uint64(i)})
	}
	gens = assign(truncs)
	require.Equal(t, genMax-1, gens[genMax-1])
	require.Equal(t, genHeldBarrier, gens[genMax])
}

func TestGenerations_AReplayGivesTheSameVersions(t *testing.T) {
	t.Parallel()
	changes := append(append(pass(2500, 5000), change{"TRUNCATE", 600_000}), pass(700, 700_000)...)
	changes = append(changes, change{"c3", 900_000})
	require.Equal(t, assign(changes), assign(changes))
}

func TestVersion_StaysInsideTheTransactionsRange(t *testing.T) {
	t.Parallel()
	const commit = 0x1_0000_0000
	require.Equal(t, uint64(commit+1), version(commit, 0), "newer than a snapshot taken at the commit LSN itself")
	require.Less(t, version(commit, genHeld), uint64(commit+commitRecordMin), "older than the next transaction's commit")
}
