package cdc

import "hash/fnv"

// A transaction's changes are applied in segments while it is still being received, so that
// memory does not grow with the transaction. Two changes of one customer in different segments
// may be written separately, and the second one must win over the first though both come from
// the same transaction. So every change gets a version of its own within its transaction's
// range: commit LSN + 1 + generation, where a customer's generation goes up by one in each
// segment in which it reappears. See doc.go ("Versions") for why that range belongs to one
// transaction alone.
//
// Segments are cut at the same changes whenever the transaction is decoded (they depend on
// nothing but the transaction's changes and their WAL positions), so a replay after a crash
// gives every change the version it had before: already applied changes are no-ops again, and
// nothing older overwrites something newer on the way.
const (
	// SegmentChanges and SegmentBytes bound a segment: it ends after this many changes, or when
	// a change starts this many bytes of WAL after the segment's first one. They are constants,
	// not settings: a replay must cut the same segments.
	SegmentChanges = 1000
	SegmentBytes   = 8 << 20

	// commitRecordMin is the smallest commit record in bytes (24-byte record header, 2-byte
	// data header, 8-byte commit time): the next transaction's commit LSN is at least this far
	// past this one's, so versions commit LSN + 1 ... commit LSN + commitRecordMin - 1 are
	// newer than every version of an earlier transaction and older than any of a later one.
	commitRecordMin = 34

	// genMax is the highest generation of a change applied before its commit.
	genMax = 30
	// Once a transaction runs out of generations (a customer reappears in more than genMax
	// segments, or TRUNCATEs used them up), the rest of it is held in memory until its commit
	// and written with genHeld; TRUNCATE barriers among it with genHeldBarrier.
	genHeldBarrier = genMax + 1
	genHeld        = genMax + 2
)

// Compile-time check: every version stays within the transaction's own range.
var _ [commitRecordMin - 2 - genHeld]struct{}

// version is the version of a change of generation gen in the transaction committed at lsn.
func version(commitLSN uint64, gen int) uint64 { return commitLSN + 1 + uint64(gen) }

// generations gives the changes of one transaction their generations, segment by segment.
type generations struct {
	segment  uint32 // index of the current segment
	start    uint64 // WAL position of the current segment's first change
	changes  int    // changes in the current segment
	floor    int    // lowest generation of the next change (raised by TRUNCATE)
	top      int    // highest generation given so far, -1 before the first
	held     bool   // out of generations: the rest of the transaction is held until commit
	customer map[uint64]uint64
	// customer maps a hash of the customer id to segment<<8 | generation of its last change.
	// Two customers whose ids collide share an entry: they may get a higher generation than
	// they need, never a lower one, and a replay collides the same way.
}

func (g *generations) reset() {
	m := g.customer
	if m == nil || len(m) > 4096 {
		m = map[uint64]uint64{} // do not keep a big transaction's map for the next one
	}
	clear(m)
	*g = generations{top: -1, customer: m}
}

// next accounts for a change at WAL position pos and reports whether it starts a new segment
// (everything received before it may then be applied).
func (g *generations) next(pos uint64) bool {
	switch {
	case g.changes == 0:
		g.start, g.changes = pos, 1
		return false
	case g.changes >= SegmentChanges || (pos > g.start && pos-g.start >= SegmentBytes):
		g.segment++
		g.start, g.changes = pos, 1
		return true
	default:
		g.changes++
		return false
	}
}

// of returns the generation of a change of customer id in the current segment: the one of the
// customer's earlier changes in this segment, one more if they were in an earlier segment.
func (g *generations) of(id string) int {
	if g.held {
		return genHeld
	}
	h := fnv.New64a() // the same in every process (unlike hash/maphash): a replay collides alike
	_, _ = h.Write([]byte(id))
	key := h.Sum64()
	gen := g.floor
	if last, ok := g.customer[key]; ok {
		seg, lastGen := uint32(last>>8), int(last&0xff)
		if seg != g.segment {
			lastGen++
		}
		gen = max(gen, lastGen)
	}
	if gen > genMax {
		g.held = true
		return genHeld
	}
	g.customer[key] = uint64(g.segment)<<8 | uint64(gen)
	g.top = max(g.top, gen)
	return gen
}

// barrier returns the generation of a TRUNCATE: above every change before it in the
// transaction; every change after it gets a higher one.
func (g *generations) barrier() int {
	if g.held {
		return genHeldBarrier
	}
	b := g.top + 1
	if b >= genMax {
		g.held = true
		return genHeldBarrier
	}
	g.floor, g.top = b+1, b
	clear(g.customer)
	return b
}
