package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// txBuffer merges the changes of the transaction being received that are not applied yet, row
// by row, in first-change order. Changes after a TRUNCATE are never merged into ones before it.
type txBuffer struct {
	lsn    uint64 // the commit LSN (BeginMessage.FinalLSN)
	commit time.Time
	ops    []*op
	index  map[string]*op
	gens   generations // the version of each change (versions.go)
	warned bool        // logged that the transaction is held in memory
}

func (b *txBuffer) reset(lsn uint64, commit time.Time) {
	b.lsn, b.commit, b.warned = lsn, commit, false
	b.take()
	b.gens.reset()
}

// take returns the buffered changes and empties the buffer.
func (b *txBuffer) take() []*op {
	ops := b.ops
	b.ops = make([]*op, 0, min(cap(ops), 2*SegmentChanges))
	clear(b.index)
	return ops
}

func (b *txBuffer) add(o *op) {
	o.lsn, o.commits = version(b.lsn, b.gens.of(o.id)), b.commit
	k := o.key()
	if prev, ok := b.index[k]; ok {
		prev.merge(o)
		prev.lsn = o.lsn // the later change's version: it may come from a later segment
		return
	}
	b.index[k] = o
	b.ops = append(b.ops, o)
}

// truncate drops buffered changes of the truncated tables (they are wiped anyway) and appends
// a barrier. Its version is newer than every earlier transaction and than this transaction's
// changes before it (also those already applied), and older than this transaction's changes
// after the TRUNCATE, which must survive it.
func (b *txBuffer) truncate(rels []*relation) {
	gone := map[string]bool{}
	for _, r := range rels {
		gone[r.name] = true
	}
	keep := b.ops[:0]
	for _, o := range b.ops {
		if o.trunc == nil && gone[o.table.name] {
			continue
		}
		keep = append(keep, o)
	}
	clear(b.ops[len(keep):])
	b.ops = append(keep, &op{trunc: rels, lsn: version(b.lsn, b.gens.barrier()), commits: b.commit})
	clear(b.index)
}

// stream runs START_REPLICATION and applies changes until ctx ends or something fails.
func (c *CDC) stream(ctx context.Context, lock *pgx.Conn, repl *pgconn.PgConn, start pglogrepl.LSN) error {
	err := pglogrepl.StartReplication(ctx, repl, c.cfg.Slot, start, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names " + quoteLiteral(c.cfg.Publication)},
	})
	if err != nil {
		return fmt.Errorf("cdc: start replication at %s: %w", start, err)
	}
	c.log.Info("cdc: streaming", "from", start)
	s := &streamState{
		c: c, lock: lock, repl: repl, confirmed: start,
		rels:     map[uint32]*relation{},
		tx:       txBuffer{index: map[string]*op{}},
		batchIdx: map[string]*op{},
	}
	s.tx.gens.reset()
	c.confirmed.Store(uint64(start))
	return s.run(ctx)
}

type streamState struct {
	c         *CDC
	lock      *pgx.Conn
	repl      *pgconn.PgConn
	rels      map[uint32]*relation
	confirmed pglogrepl.LSN // last LSN whose effects are durable: what the server may forget

	inTx     bool
	tx       txBuffer
	batch    []*op          // committed, not yet applied
	batchIdx map[string]*op // the last op of each row in batch, for merging across transactions
	batchEnd pglogrepl.LSN  // end LSN of the last commit in batch
	batchDue time.Time

	nextStatus    time.Time // the next heartbeat (standby status update)
	nextLockCheck time.Time
}

func (s *streamState) run(ctx context.Context) error {
	s.nextStatus = time.Now().Add(s.c.cfg.StandbyTimeout)
	s.nextLockCheck = s.nextStatus
	for {
		if len(s.batch) > 0 && (len(s.batch) >= s.c.cfg.BatchSize || !time.Now().Before(s.batchDue)) {
			if err := s.flush(ctx); err != nil {
				return err
			}
		}
		if !time.Now().Before(s.nextStatus) {
			if err := s.sendStatus(ctx); err != nil {
				return err
			}
		}
		if !time.Now().Before(s.nextLockCheck) {
			if err := s.checkLock(ctx); err != nil {
				return err
			}
		}
		deadline := s.nextStatus
		if s.nextLockCheck.Before(deadline) {
			deadline = s.nextLockCheck
		}
		if len(s.batch) > 0 && s.batchDue.Before(deadline) {
			deadline = s.batchDue
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		raw, err := s.repl.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("cdc: receive: %w", err)
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("cdc: server: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyData:
			if err := s.handleCopyData(ctx, msg.Data); err != nil {
				return err
			}
		default:
			return fmt.Errorf("cdc: unexpected message %T", raw)
		}
	}
}

func (s *streamState) handleCopyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return errors.New("cdc: empty CopyData")
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("cdc: keepalive: %w", err)
		}
		// Everything the server sent up to ServerWALEnd has been received. When none of it is
		// waiting to be applied, the slot may move there: this keeps an idle slot (or one whose
		// tables see no writes while the database does) from retaining WAL without bound.
		if !s.inTx && len(s.batch) == 0 && pkm.ServerWALEnd > s.confirmed {
			s.confirmed = pkm.ServerWALEnd
		}
		if pkm.ReplyRequested {
			return s.sendStatus(ctx)
		}
		return nil
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("cdc: xlogdata: %w", err)
		}
		return s.handleLogical(ctx, xld.WALStart, xld.WALData)
	default:
		return fmt.Errorf("cdc: unknown CopyData type %q", data[0])
	}
}

// handleLogical handles one pgoutput message; pos is where its change starts in the WAL.
func (s *streamState) handleLogical(ctx context.Context, pos pglogrepl.LSN, data []byte) error {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return fmt.Errorf("cdc: decode pgoutput: %w", err)
	}
	switch msg.(type) {
	case *pglogrepl.InsertMessage, *pglogrepl.UpdateMessage, *pglogrepl.DeleteMessage, *pglogrepl.TruncateMessage:
		if err := s.change(ctx, pos); err != nil {
			return err
		}
		defer s.buffered()
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		rel, ok, err := relationFromMessage(m)
		if err != nil {
			return fmt.Errorf("cdc: %w", err)
		}
		s.rels[m.RelationID] = rel // nil for a table that is not ours: its changes are skipped
		if !ok {
			s.c.log.Warn("cdc: publication covers a table CDC does not map; skipping it", "table", m.RelationName)
		}
	case *pglogrepl.BeginMessage:
		s.inTx = true
		s.tx.reset(uint64(m.FinalLSN), m.CommitTime)
	case *pglogrepl.InsertMessage:
		rel, err := s.rel(m.RelationID)
		if rel == nil || err != nil {
			return err
		}
		o, err := rel.upsertOp(cellsFromTuple(m.Tuple))
		if err != nil {
			return fmt.Errorf("cdc: insert: %w", err)
		}
		s.tx.add(o)
	case *pglogrepl.UpdateMessage:
		rel, err := s.rel(m.RelationID)
		if rel == nil || err != nil {
			return err
		}
		o, err := rel.upsertOp(cellsFromTuple(m.NewTuple))
		if err != nil {
			return fmt.Errorf("cdc: update: %w", err)
		}
		if m.OldTuple != nil { // the key changed: the old row is gone
			old, err := rel.deleteOp(cellsFromTuple(m.OldTuple))
			if err != nil {
				return fmt.Errorf("cdc: update: old key: %w", err)
			}
			if old.key() != o.key() {
				s.tx.add(old)
			}
		}
		s.tx.add(o)
	case *pglogrepl.DeleteMessage:
		rel, err := s.rel(m.RelationID)
		if rel == nil || err != nil {
			return err
		}
		o, err := rel.deleteOp(cellsFromTuple(m.OldTuple))
		if err != nil {
			return fmt.Errorf("cdc: delete: %w", err)
		}
		s.tx.add(o)
	case *pglogrepl.TruncateMessage:
		var rels []*relation
		for _, id := range m.RelationIDs {
			if rel, _ := s.rel(id); rel != nil {
				rels = append(rels, rel)
			}
		}
		if len(rels) > 0 {
			s.tx.truncate(rels)
		}
	case *pglogrepl.CommitMessage:
		s.inTx = false
		if m.TransactionEndLSN < pglogrepl.LSN(version(s.tx.lsn, genHeld)) {
			// Cannot happen (versions.go): say so loudly rather than lose changes quietly.
			s.c.log.Error("cdc: commit record shorter than the versions of its changes; a later transaction's changes may be refused",
				"commit", m.CommitLSN, "end", m.TransactionEndLSN)
		}
		if len(s.batch) == 0 {
			s.batchDue = time.Now().Add(s.c.cfg.BatchDelay)
		}
		for _, o := range s.tx.take() {
			s.addToBatch(o)
		}
		s.buffered()
		s.batchEnd = m.TransactionEndLSN
		if len(s.batch) == 0 { // a transaction with nothing for us: nothing to wait for
			s.confirmed = max(s.confirmed, m.TransactionEndLSN)
		}
	case *pglogrepl.TypeMessage, *pglogrepl.OriginMessage, *pglogrepl.LogicalDecodingMessage:
	default:
		return fmt.Errorf("cdc: unexpected pgoutput message %T", msg)
	}
	return nil
}

// addToBatch appends a committed op to the batch, merging it into an earlier upsert of the same
// row from another transaction of the batch: one DynamoDB write then carries both, with the later
// version. Deletes (erasure) and TRUNCATE barriers are never merged, so their effects stay in order.
func (s *streamState) addToBatch(o *op) {
	if o.trunc != nil {
		clear(s.batchIdx)
		s.batch = append(s.batch, o)
		return
	}
	k := o.key()
	if prev, ok := s.batchIdx[k]; ok && !prev.del && !o.del {
		commit := prev.commits
		prev.merge(o)
		prev.lsn, prev.commits, prev.merged = o.lsn, o.commits, append(prev.merged, commit)
		return
	}
	s.batchIdx[k] = o
	s.batch = append(s.batch, o)
}

// rel returns the relation of a change, or nil for a table that is not ours.
func (s *streamState) rel(id uint32) (*relation, error) {
	rel, ok := s.rels[id]
	if !ok {
		return nil, fmt.Errorf("cdc: change for relation %d before its Relation message", id)
	}
	return rel, nil
}

// flush applies the committed batch and then acknowledges it.
func (s *streamState) flush(ctx context.Context) error {
	if err := s.applyOps(ctx, s.batch); err != nil {
		return err
	}
	clear(s.batch) // the array stays for the next batch, its ops need not
	s.batch = s.batch[:0]
	clear(s.batchIdx)
	s.confirmed = max(s.confirmed, s.batchEnd)
	return s.sendStatus(ctx)
}

// applyOps writes ops, BatchSize at a time, keeping the heartbeat going, and reports them.
func (s *streamState) applyOps(ctx context.Context, ops []*op) error {
	for rest := ops; len(rest) > 0; {
		n := min(len(rest), max(s.c.cfg.BatchSize, 1))
		if err := s.c.apply(ctx, rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
		if len(rest) > 0 && !time.Now().Before(s.nextStatus) {
			// A long batch: keep the server from timing us out (the position does not move).
			if err := s.sendStatus(ctx); err != nil {
				return err
			}
		}
	}
	var commits []time.Time
	for _, o := range ops {
		commits = append(append(commits, o.commits), o.merged...)
	}
	now := time.Now()
	for _, t := range commits {
		commitToProfile.Observe(now.Sub(t).Seconds())
	}
	if hook := s.c.cfg.OnApply; hook != nil && len(commits) > 0 {
		hook(len(commits), commits)
	}
	return nil
}

// checkLock makes sure the session holding the slot's advisory lock is still alive: if it died
// (a network partition), a standby may have taken over, and this process must stop.
func (s *streamState) checkLock(ctx context.Context) error {
	if _, err := s.lock.Exec(ctx, q("ping")); err != nil {
		return fmt.Errorf("cdc: lock connection lost: %w", err)
	}
	s.nextLockCheck = time.Now().Add(s.c.cfg.StandbyTimeout)
	return nil
}

// sendStatus reports the confirmed position, set explicitly in all three fields: a zero flush
// position would let pglogrepl fill in the write position, and the server forget WAL whose
// changes are not durable in DynamoDB yet.
func (s *streamState) sendStatus(ctx context.Context) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: s.confirmed,
		WALFlushPosition: s.confirmed,
		WALApplyPosition: s.confirmed,
		ClientTime:       time.Now(),
	})
	if err != nil {
		return fmt.Errorf("cdc: standby status update: %w", err)
	}
	s.c.confirmed.Store(uint64(s.confirmed))
	confirmedLSN.Set(float64(s.confirmed))
	s.nextStatus = time.Now().Add(s.c.cfg.StandbyTimeout)
	return nil
}

var seed = maphash.MakeSeed()

// apply writes ops: row changes of one customer in order on one worker, customers spread over
// the workers; a TRUNCATE barrier waits for everything before it and holds back everything after.
func (c *CDC) apply(ctx context.Context, ops []*op) error {
	for len(ops) > 0 {
		i := 0
		for i < len(ops) && ops[i].trunc == nil {
			i++
		}
		if err := c.applyRows(ctx, ops[:i]); err != nil {
			return err
		}
		if i < len(ops) {
			if err := c.applyTruncate(ctx, ops[i]); err != nil {
				return err
			}
			i++
		}
		ops = ops[i:]
	}
	return nil
}

func (c *CDC) applyRows(ctx context.Context, ops []*op) error {
	if len(ops) == 0 {
		return nil
	}
	workers := min(c.cfg.Workers, len(ops))
	parts := make([][]*op, workers)
	for _, o := range ops {
		w := maphash.String(seed, o.id) % uint64(workers)
		parts[w] = append(parts[w], o)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, o := range part {
				if err := c.applyOne(ctx, o); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	n := len(ops)
	for _, o := range ops {
		n += len(o.merged)
	}
	c.applied.Add(int64(n))
	rowsApplied.Add(float64(n))
	return nil
}

func (c *CDC) applyOne(ctx context.Context, o *op) error {
	var err error
	switch {
	case o.table.entryCol != "":
		var v map[string]any
		if !o.del {
			v = o.fields
		}
		_, err = c.store.ApplyEntry(ctx, o.id, o.table.kind, o.entry, o.lsn, v)
	case o.del:
		// The customer is gone: every CRM attribute goes, both maps are emptied and their
		// floors raised.
		_, err = c.store.DeleteCRM(ctx, o.id, o.lsn, o.remove)
	default:
		_, err = c.store.ApplyCRM(ctx, o.id, o.lsn, o.fields, o.remove)
	}
	if errors.Is(err, profile.ErrWriteRefused) && c.cfg.DeadLetters != nil {
		return c.deadLetter(ctx, o, err)
	}
	if err != nil {
		return fmt.Errorf("cdc: apply %s %s: %w", o.table.name, o.id, err)
	}
	return nil
}

// deadLetter keeps a change DynamoDB refuses, raw, with the reason; the stream goes on.
func (c *CDC) deadLetter(ctx context.Context, o *op, reason error) error {
	payload, err := json.Marshal(map[string]any{
		"table": o.table.name, "customer_id": o.id, "entry": o.entry, "lsn": pglogrepl.LSN(o.lsn).String(),
		"delete": o.del, "fields": o.fields, "remove": o.remove,
	})
	if err != nil {
		return fmt.Errorf("cdc: dead letter %s %s: %w", o.table.name, o.id, err)
	}
	if err := c.cfg.DeadLetters.Put(ctx, DeadLetterSource, reason.Error(), payload); err != nil {
		return fmt.Errorf("cdc: dead letter %s %s: %w", o.table.name, o.id, err)
	}
	c.log.Error("cdc: change refused by DynamoDB: dead-lettered", "table", o.table.name, "customer_id", o.id, "err", reason)
	return nil
}

// applyTruncate clears what the truncated tables put on every profile.
func (c *CDC) applyTruncate(ctx context.Context, o *op) error {
	c.log.Info("cdc: truncate: clearing profiles", "tables", len(o.trunc), "lsn", pglogrepl.LSN(o.lsn))
	err := c.store.Scan(ctx, c.cfg.Workers, func(p *profile.Profile) error {
		for _, rel := range o.trunc {
			var err error
			if rel.entryCol != "" {
				_, err = c.store.ClearEntries(ctx, p.ID, rel.kind, o.lsn)
			} else {
				_, err = c.store.ApplyCRM(ctx, p.ID, o.lsn, nil, rel.crmColumns())
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cdc: truncate: %w", err)
	}
	return nil
}
