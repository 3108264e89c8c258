package jobs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tailor-email/tailor/pipeline/profile"
)

// handoff holds the profiles the fan-out scanned for the render batches that are due now, so
// the render jobs this process works take them instead of reading them again with
// BatchGetItem (on DynamoDB a second read of every recipient doubles the campaign's read
// cost). It is only a shortcut: correctness never depends on it. A job that finds no entry
// (one another process works, a retry after a crash, an entry evicted) reads its profiles
// from the table, as every job did before.
//
// Why not carry the profiles in the jobs' arguments: River stores arguments as jsonb in
// river_job (kept CompletedRetainDefault), and 100 000 recipients' profiles in their DynamoDB
// JSON form made Postgres parse, compress and return some 200 MB of JSON: the campaign took
// twice as long as with BatchGetItem (see the closing note of issue 9).
//
// Bounded in memory: at most max profiles. River hands jobs out in insertion order, so the
// fan-out waits (up to wait after the last take) for render jobs to take entries before it
// adds a page, which keeps it at most max profiles ahead of the renderers; and an entry put
// more than lag batches before one a job just took was handed to another process (or will
// never be taken): it is dropped, so a fleet of processes never waits on entries that only
// another process's jobs could use.
type handoff struct {
	max, lag int
	wait     time.Duration

	mu      sync.Mutex
	seq     uint64
	held    int                   // profiles held
	batches map[string]*heldBatch // by batchKey
	queue   []*heldBatch          // in put order; taken or dropped ones are skipped
	room    chan struct{}         // closed (and replaced) whenever entries leave
}

type heldBatch struct {
	key      string
	seq      uint64
	profiles map[string]*profile.Profile
	gone     bool
}

// newHandoff returns a hand-off of at most max profiles; nil (no hand-off) when max < 1.
func newHandoff(max, lag int, wait time.Duration) *handoff {
	if max < 1 {
		return nil
	}
	return &handoff{max: max, lag: lag, wait: wait, batches: map[string]*heldBatch{}, room: make(chan struct{})}
}

// batchKey identifies a render batch: the batches of one campaign and send time hold
// distinct recipients, so the first one names the batch.
func batchKey(campaignID int64, sendAt time.Time, ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return fmt.Sprintf("%d|%d|%s", campaignID, sendAt.UnixNano(), ids[0])
}

// put holds a batch's profiles for its render job. When the hand-off is full it waits for jobs
// to take entries, and drops the oldest once none was taken for h.wait. It returns early only
// when ctx ends.
func (h *handoff) put(ctx context.Context, key string, profiles map[string]*profile.Profile) error {
	if h == nil || key == "" || len(profiles) > h.max {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.held+len(profiles) > h.max {
		room := h.room
		h.mu.Unlock()
		t := time.NewTimer(h.wait)
		select {
		case <-ctx.Done():
			t.Stop()
			h.mu.Lock()
			return ctx.Err()
		case <-room:
			t.Stop()
			h.mu.Lock()
		case <-t.C:
			h.mu.Lock()
			h.dropOldest()
		}
	}
	h.seq++
	b := &heldBatch{key: key, seq: h.seq, profiles: profiles}
	if old := h.batches[key]; old != nil {
		h.remove(old) // the same page enqueued again (a retried start job)
	}
	h.batches[key] = b
	h.queue = append(h.queue, b)
	h.held += len(profiles)
	return nil
}

// take returns and forgets a batch's profiles, nil when the hand-off does not hold it. Entries
// put more than lag batches before it are dropped (another process took their jobs).
func (h *handoff) take(key string) map[string]*profile.Profile {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.batches[key]
	if b == nil {
		return nil
	}

	h.remove(b)
	for len(h.queue) > 0 && (h.queue[0].gone || h.queue[0].seq+uint64(h.lag) < b.seq) {
		h.remove(h.queue[0])
		h.queue[0] = nil
		h.queue = h.queue[1:]
	}
	return b.profiles
}

// remove forgets b and wakes the puts waiting for room. Callers hold h.mu.
func (h *handoff) remove(b *heldBatch) {
	if b.gone {
		return
	}
	b.gone = true
	delete(h.batches, b.key)
	h.held -= len(b.profiles)
	close(h.room)
	h.room = make(chan struct{})
}

// dropOldest forgets the oldest batch still held. Callers hold h.mu.
func (h *handoff) dropOldest() {
	for len(h.queue) > 0 {
		b := h.queue[0]
		h.queue[0] = nil
		h.queue = h.queue[1:]
		if !b.gone {
			h.remove(b)
			return
		}
	}
}
