package cdc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/jackc/pglogrepl"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// ResyncResult says what a resync did.
type ResyncResult struct {
	SnapshotLSN uint64 // the version the resync wrote with
	Rows        int64  // rows written from the snapshot
	Erased      int64  // profiles and map entries whose rows no longer exist
}

// Resync re-backfills every row of the published tables from a fresh snapshot (exported by a
// temporary slot), then erases the CRM parts of profiles, and the map entries, whose rows the
// snapshot does not hold. It repairs profiles that drifted (a restored DynamoDB table, a bug) and
// is safe while a CDC process streams: the snapshot's version is older than every change
// streamed after it, so neither side overwrites the other's newer data. It does not move the
// permanent slot. It holds the keys of all rows in memory while it runs. A misconfiguration
// (see Run) comes back as a *ConfigError.
func (c *CDC) Resync(ctx context.Context) (ResyncResult, error) {
	res, err := c.resync(ctx)
	if perm := permanent(err); perm != nil {
		return res, perm
	}
	return res, err
}

func (c *CDC) resync(ctx context.Context) (ResyncResult, error) {
	repl, err := connectReplication(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return ResyncResult{}, err
	}
	defer closePgConn(repl) // drops the temporary slot
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := fmt.Sprintf("%.48s_resync_%s", c.cfg.Slot, hex.EncodeToString(suffix))
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: true, Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return ResyncResult{}, fmt.Errorf("cdc: resync: create temporary slot: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return ResyncResult{}, fmt.Errorf("cdc: resync: consistent point %q: %w", res.ConsistentPoint, err)
	}
	return c.syncSnapshot(ctx, res.SnapshotName, lsn)
}

// syncSnapshot makes the profiles equal the exported snapshot: it writes every row at version
// lsn, then erases what profiles hold (older than lsn) of rows the snapshot does not have.
func (c *CDC) syncSnapshot(ctx context.Context, snapshot string, lsn pglogrepl.LSN) (ResyncResult, error) {
	out := ResyncResult{SnapshotLSN: uint64(lsn)}
	var mu sync.Mutex
	seen := map[string]bool{}
	n, rels, err := c.backfill(ctx, snapshot, lsn, func(o *op) {
		mu.Lock()
		seen[o.key()] = true
		mu.Unlock()
	})
	out.Rows = n
	if err != nil {
		return out, err
	}
	c.log.Info("cdc: snapshot rows written", "rows", n, "lsn", lsn)

	// Profiles still carrying rows the snapshot does not have: erase them at the snapshot's
	// version (a newer streamed change wins over this, as it should).
	var erased sync.Mutex
	err = c.store.Scan(ctx, c.cfg.Workers, func(p *profile.Profile) error {
		id := p.ID
		var ops []*op
		if p.CRM.Email != "" && p.CRMVersion < uint64(lsn) {
			cust := rels[TableCustomers]
			if !seen[(&op{table: cust, id: id}).key()] {
				ops = append(ops, &op{table: cust, id: id, del: true, remove: cust.crmColumns(), lsn: uint64(lsn)})
			}
		}
		versions := map[string]map[string]uint64{TableSubscriptions: {}, TableConsents: {}}
		for k, s := range p.Subscriptions {
			versions[TableSubscriptions][k] = s.Version
		}
		for k, s := range p.Consents {
			versions[TableConsents][k] = s.Version
		}
		for _, name := range []string{TableSubscriptions, TableConsents} {
			rel := rels[name]
			for k, v := range versions[name] {
				if v >= uint64(lsn) {
					continue
				}
				if o := (&op{table: rel, id: id, entry: k, del: true, lsn: uint64(lsn)}); !seen[o.key()] {
					ops = append(ops, o)
				}
			}
		}
		for _, o := range ops {
			if err := c.applyOne(ctx, o); err != nil {
				return err
			}
		}
		erased.Lock()
		out.Erased += int64(len(ops))
		erased.Unlock()
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("cdc: erase rows that are gone: %w", err)
	}
	c.log.Info("cdc: profiles match the snapshot", "rows", out.Rows, "erased", out.Erased)
	return out, nil
}
