package cdc

import (
	"context"
	"errors"

	"github.com/jackc/pglogrepl"
)

// change is called before each row change of the open transaction with the change's WAL
// position. When the change starts a segment and at least BatchSize changes are buffered, it
// applies them, after the committed batch (which it applies and acknowledges first): memory
// stays bounded by about BatchSize + SegmentChanges changes however big the transaction is.
// Nothing of the open transaction is acknowledged before its commit.
func (s *streamState) change(ctx context.Context, pos pglogrepl.LSN) error {
	if !s.inTx {
		return errors.New("cdc: row change outside a transaction")
	}
	if !s.tx.gens.next(uint64(pos)) || s.tx.gens.held || len(s.tx.ops) < s.c.cfg.BatchSize {
		return nil
	}
	if len(s.batch) > 0 {
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	return s.applyOps(ctx, s.tx.take())
}

// buffered records how many changes are held in memory, and says once per transaction when
// the rest of one is held until its commit.
func (s *streamState) buffered() {
	if n := int64(len(s.tx.ops) + len(s.batch)); n > s.c.peakBuffered.Load() {
		s.c.peakBuffered.Store(n)
	}
	if s.tx.gens.held && !s.tx.warned {
		s.tx.warned = true
		s.c.log.Warn("cdc: a transaction used up its versions (a customer in too many of its segments, or too many TRUNCATEs): holding the rest of it in memory until its commit",
			"commit", pglogrepl.LSN(s.tx.lsn), "generations", genMax+1, "segment_changes", SegmentChanges)
	}
}
