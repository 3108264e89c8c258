package delivery_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/delivery"
)

// memSource is an in-memory Source: the claim / lease / ack store's contract without Postgres.
// Messages are made on demand by gen (so 100 000 of them cost little memory); a retried
// message is ready again RetryAfter later by now. It records every contract violation: a
// message handed out while leased, an ack of a message not leased or with the wrong receipt,
// a second final outcome.
type memSource struct {
	gen func(id int64) delivery.Message
	now func() time.Time

	mu         sync.Mutex
	total      int
	next       int64 // ids 1..next-1 were handed out at least once
	queue      []int64
	delayed    map[int64]time.Time
	leased     map[int64]string // id -> receipt
	attempts   map[int64]int
	final      map[int64]delivery.Outcome
	retries    []delivery.Outcome
	claims     int
	violations []string
	ackErrs    int // the next ackErrs Acks fail
	done       chan struct{}
	changed    chan struct{}
}

func newMemSource(total int, gen func(id int64) delivery.Message) *memSource {
	return &memSource{
		gen: gen, now: time.Now, total: total, next: 1, delayed: map[int64]time.Time{}, leased: map[int64]string{},
		attempts: map[int64]int{}, final: map[int64]delivery.Outcome{}, done: make(chan struct{}), changed: make(chan struct{}),
	}
}

var _ delivery.Source = (*memSource)(nil)

func (s *memSource) Claim(ctx context.Context, limit int, lease time.Duration) ([]delivery.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claims++
	now := s.now()
	for id, at := range s.delayed {
		if !at.After(now) {
			s.queue = append(s.queue, id)
			delete(s.delayed, id)
		}
	}
	var out []delivery.Message
	for len(out) < limit {
		var id int64
		switch {
		case len(s.queue) > 0:
			id, s.queue = s.queue[0], s.queue[1:]
		case s.next <= int64(s.total):
			id = s.next
			s.next++
		default:
			return out, nil
		}
		if _, ok := s.leased[id]; ok {
			s.violations = append(s.violations, fmt.Sprintf("message %d handed out while leased", id))
		}
		m := s.gen(id)
		m.ID, m.Attempt = id, s.attempts[id]
		m.Receipt = fmt.Sprintf("r%d.%d", id, m.Attempt)
		s.attempts[id]++
		s.leased[id] = m.Receipt
		out = append(out, m)
	}
	return out, nil
}

func (s *memSource) Ack(ctx context.Context, outcomes []delivery.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ackErrs > 0 {
		s.ackErrs--
		return fmt.Errorf("ack: store unavailable")
	}
	for _, o := range outcomes {
		if r, ok := s.leased[o.MessageID]; !ok || r != o.Receipt {
			s.violations = append(s.violations, fmt.Sprintf("ack of message %d with receipt %q, leased %v (%q)", o.MessageID, o.Receipt, ok, r))
			continue
		}
		delete(s.leased, o.MessageID)
		if o.Status == delivery.StatusRetry {
			s.retries = append(s.retries, o)
			s.delayed[o.MessageID] = s.now().Add(o.RetryAfter)
			continue
		}
		if _, dup := s.final[o.MessageID]; dup {
			s.violations = append(s.violations, fmt.Sprintf("second final outcome for message %d", o.MessageID))
		}
		s.final[o.MessageID] = o
	}
	if len(s.final) == s.total {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// waitDone waits until every message has a final outcome.
func (s *memSource) waitDone(t testing.TB) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(2 * time.Minute):
		s.mu.Lock()
		defer s.mu.Unlock()
		t.Fatalf("only %d of %d messages have a final outcome (%d retries)", len(s.final), s.total, len(s.retries))
	}
}

// waitFor waits until cond holds over the source's state (under its lock).
func (s *memSource) waitFor(t testing.TB, cond func(*memSource) bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		s.mu.Lock()
		ok, changed := cond(s), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatal("the source never reached the condition")
		}
	}
}

func (s *memSource) finals() map[int64]delivery.Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int64]delivery.Outcome, len(s.final))
	for k, v := range s.final {
		out[k] = v
	}
	return out
}

func (s *memSource) requireClean(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Empty(t, s.violations)
	require.Empty(t, s.leased, "nothing left leased")
}

// fakeClock drives the relay's rate limits: time stands still until the test advances it, and
// Waiting says how many sends wait for it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters map[chan struct{}]time.Time
	changed chan struct{}
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), waiters: map[chan struct{}]time.Time{}, changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Wait(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	ch := make(chan struct{})
	c.waiters[ch] = c.now.Add(d)
	c.notifyLocked()
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiters, ch)
		c.notifyLocked()
		c.mu.Unlock()
		return ctx.Err()
	}
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for ch, at := range c.waiters {
		if !at.After(c.now) {
			close(ch)
			delete(c.waiters, ch)
		}
	}
	c.notifyLocked()
}

func (c *fakeClock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// waitWaiting waits until n sends wait for the clock.
func (c *fakeClock) waitWaiting(t testing.TB, n int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		c.mu.Lock()
		got, changed := len(c.waiters), c.changed
		c.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d sends wait for the clock, want %d", got, n)
		}
	}
}
