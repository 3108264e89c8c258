package cdc

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tailor-email/tailor/internal/sqlfile"
)

//go:embed queries.sql
var sqlFiles embed.FS

var queries = sqlfile.MustLoad(sqlFiles, "queries.sql")

func q(name string) string {
	s, ok := queries[name]
	if !ok {
		panic("cdc: no query " + name)
	}
	return s
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

func closePgConn(c *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// ensurePublication creates the publication, or makes an existing one cover exactly the tables.
func ensurePublication(ctx context.Context, conn *pgx.Conn, name string) error {
	var ddl string
	if err := conn.QueryRow(ctx, q("publication_ddl"), name).Scan(&ddl); err != nil {
		return fmt.Errorf("cdc: publication %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, ddl); err != nil {
		return fmt.Errorf("cdc: publication %s: %w", name, err)
	}
	return nil
}

// connectReplication opens a logical replication connection (replication=database).
func connectReplication(ctx context.Context, url string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("cdc: database URL: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cdc: replication connection: %w", err)
	}
	return conn, nil
}

// prepareSlot returns the position to stream from. A missing slot, or one whose backfill never
// finished, is (re-)created with an exported snapshot and every existing row is backfilled from
// that snapshot before streaming starts.
func (c *CDC) prepareSlot(ctx context.Context, conn *pgx.Conn, repl *pgconn.PgConn) (pglogrepl.LSN, error) {
	var confirmed, slotType, plugin string
	var active, here bool
	err := conn.QueryRow(ctx, q("slot"), c.cfg.Slot).Scan(&confirmed, &active, &slotType, &plugin, &here)
	exists := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("cdc: slot %s: %w", c.cfg.Slot, err)
	}
	if exists {
		if err := checkSlot(c.cfg.Slot, slotType, plugin, here); err != nil {
			return 0, err
		}
	}
	var consistent string
	err = conn.QueryRow(ctx, q("backfilled"), c.cfg.Slot).Scan(&consistent)
	backfilled := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("cdc: slot %s bookkeeping: %w", c.cfg.Slot, err)
	}
	if exists && backfilled {
		lsn, err := pglogrepl.ParseLSN(confirmed)
		if err != nil {
			return 0, fmt.Errorf("cdc: slot %s: confirmed_flush_lsn %q: %w", c.cfg.Slot, confirmed, err)
		}
		return lsn, nil
	}
	if exists {
		c.log.Warn("cdc: slot exists but its backfill never finished: re-creating it")
		if _, err := conn.Exec(ctx, q("drop_slot"), c.cfg.Slot); err != nil {
			return 0, fmt.Errorf("cdc: drop unfinished slot %s: %w", c.cfg.Slot, err)
		}
	}
	if _, err := conn.Exec(ctx, q("forget_slot"), c.cfg.Slot); err != nil {
		return 0, fmt.Errorf("cdc: slot %s bookkeeping: %w", c.cfg.Slot, err)
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, c.cfg.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return 0, fmt.Errorf("cdc: create slot %s: %w", c.cfg.Slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("cdc: slot %s: consistent point %q: %w", c.cfg.Slot, res.ConsistentPoint, err)
	}
	c.log.Info("cdc: slot created; backfilling", "consistent_point", lsn)
	// Profiles may hold rows deleted while no slot existed (a dropped slot, a process that died
	// during its backfill): the backfill erases those as well as writing every row.
	res2, err := c.syncSnapshot(ctx, res.SnapshotName, lsn)
	if err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, q("mark_backfilled"), c.cfg.Slot, lsn.String(), res2.Rows); err != nil {
		return 0, fmt.Errorf("cdc: slot %s bookkeeping: %w", c.cfg.Slot, err)
	}
	c.log.Info("cdc: backfill done", "rows", res2.Rows, "erased", res2.Erased)
	return lsn, nil
}

// checkSlot refuses a slot of the same name that CDC cannot use.
func checkSlot(slot, slotType, plugin string, here bool) error {
	drop := fmt.Sprintf("drop it (SELECT pg_drop_replication_slot('%s')) or choose another --prefix", slot)
	switch {
	case slotType != "logical":
		return &ConfigError{What: fmt.Sprintf("replication slot %s is a %s slot", slot, slotType), Fix: "CDC needs a logical slot: " + drop}
	case !here:
		return &ConfigError{What: fmt.Sprintf("replication slot %s belongs to another database", slot), Fix: "choose another --prefix, or drop the slot in that database"}
	case plugin != "pgoutput":
		return &ConfigError{What: fmt.Sprintf("replication slot %s uses plugin %q", slot, plugin), Fix: "CDC needs a pgoutput slot: " + drop}
	}
	return nil
}

// backfill writes every row of the published tables as the exported snapshot sees them, with
// version lsn (the snapshot's consistent point). seen, when not nil, receives each row's key.
// It returns the number of rows and the tables' relations.
func (c *CDC) backfill(ctx context.Context, snapshot string, lsn pglogrepl.LSN, seen func(o *op)) (int64, map[string]*relation, error) {
	conn, err := pgx.Connect(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return 0, nil, fmt.Errorf("cdc: backfill: connect: %w", err)
	}
	defer closeConn(conn)
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, nil, fmt.Errorf("cdc: backfill: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(snapshot)); err != nil {
		return 0, nil, fmt.Errorf("cdc: backfill: set snapshot: %w", err)
	}
	var total int64
	rels := map[string]*relation{}
	for _, name := range Tables {
		n, rel, err := c.backfillTable(ctx, tx, tableSpecs[name], uint64(lsn), seen)
		total += n
		if err != nil {
			return total, nil, err
		}
		rels[name] = rel
	}
	return total, rels, nil
}

func (c *CDC) backfillTable(ctx context.Context, tx pgx.Tx, spec table, lsn uint64, seen func(o *op)) (int64, *relation, error) {
	rows, err := tx.Query(ctx, q("backfill_"+spec.name), pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		return 0, nil, fmt.Errorf("cdc: backfill %s: %w", spec.name, err)
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	cols := make([]column, len(fds))
	for i, fd := range fds {
		cols[i] = column{name: fd.Name, oid: fd.DataTypeOID}
	}
	rel, err := newRelation(spec, cols)
	if err != nil {
		return 0, nil, fmt.Errorf("cdc: backfill: %w", err)
	}
	var n int64
	batch := make([]*op, 0, c.cfg.BatchSize)
	flush := func() error {
		if err := c.apply(ctx, batch); err != nil {
			return fmt.Errorf("cdc: backfill %s: %w", spec.name, err)
		}
		batch = batch[:0]
		return nil
	}
	for rows.Next() {
		raw := rows.RawValues()
		cells := make([]cell, len(raw))
		for i, v := range raw {
			if v == nil {
				cells[i] = cell{kind: cellNull}
			} else {
				cells[i] = cell{kind: cellText, data: append([]byte(nil), v...)}
			}
		}
		o, err := rel.upsertOp(cells)
		if err != nil {
			return n, rel, fmt.Errorf("cdc: backfill: %w", err)
		}
		o.lsn = lsn
		if seen != nil {
			seen(o)
		}
		batch = append(batch, o)
		n++
		if len(batch) >= c.cfg.BatchSize {
			if err := flush(); err != nil {
				return n, rel, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return n, rel, fmt.Errorf("cdc: backfill %s: %w", spec.name, err)
	}
	return n, rel, flush()
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
