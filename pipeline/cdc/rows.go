package cdc

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tailor-email/tailor/pipeline/profile"
)

// Tables the publication covers, in the order they are backfilled.
const (
	TableCustomers     = "customers"
	TableSubscriptions = "subscriptions"
	TableConsents      = "consents"
)

// Tables lists the published tables.
var Tables = []string{TableCustomers, TableSubscriptions, TableConsents}

// table says how one published table lands on a profile. Where each column goes is
// pipeline/profile's business (its codec): CDC hands it column names and decoded values.
type table struct {
	name     string
	idCol    string            // the column holding the customer id
	entryCol string            // child tables: the column naming the map entry (topic, purpose)
	kind     profile.EntryKind // child tables: the profile's preference map
}

var tableSpecs = map[string]table{
	TableCustomers:     {name: TableCustomers, idCol: "id"},
	TableSubscriptions: {name: TableSubscriptions, idCol: "customer_id", entryCol: "topic", kind: profile.Subscriptions},
	TableConsents:      {name: TableConsents, idCol: "customer_id", entryCol: "purpose", kind: profile.Consents},
}

type column struct {
	name string
	oid  uint32
}

// relation is a published table as the stream (Relation message) or a backfill query describes it.
type relation struct {
	table
	cols []column
}

func newRelation(spec table, cols []column) (*relation, error) {
	r := &relation{table: spec, cols: cols}
	var haveID, haveEntry bool
	for _, c := range cols {
		haveID = haveID || c.name == spec.idCol
		haveEntry = haveEntry || c.name == spec.entryCol
	}
	if !haveID || (spec.entryCol != "" && !haveEntry) {
		return nil, fmt.Errorf("table %s: key columns %s %s missing", spec.name, spec.idCol, spec.entryCol)
	}
	return r, nil
}

func relationFromMessage(m *pglogrepl.RelationMessage) (*relation, bool, error) {
	spec, ok := tableSpecs[m.RelationName]
	if !ok {
		return nil, false, nil
	}
	cols := make([]column, len(m.Columns))
	for i, c := range m.Columns {
		cols[i] = column{name: c.Name, oid: c.DataType}
	}
	r, err := newRelation(spec, cols)
	return r, true, err
}

// crmColumns lists the columns of a customers relation other than the id (for erasure).
func (r *relation) crmColumns() []string {
	var out []string
	for _, c := range r.cols {
		if c.name != r.idCol {
			out = append(out, c.name)
		}
	}
	return out
}

// Cell kinds of a decoded tuple.
const (
	cellNull      = 'n'
	cellUnchanged = 'u' // an unchanged TOASTed value, not sent
	cellText      = 't'
)

type cell struct {
	kind byte
	data []byte
}

func cellsFromTuple(t *pglogrepl.TupleData) []cell {
	if t == nil {
		return nil
	}
	out := make([]cell, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = cell{kind: c.DataType, data: c.Data}
	}
	return out
}

// rowKey returns the customer id and (child tables) the entry key of a tuple.
func (r *relation) rowKey(cells []cell) (id, entry string, err error) {
	if len(cells) != len(r.cols) {
		return "", "", fmt.Errorf("table %s: tuple has %d columns, relation %d", r.name, len(cells), len(r.cols))
	}
	for i, c := range r.cols {
		switch c.name {
		case r.idCol:
			id = string(cells[i].data)
		case r.entryCol:
			entry = string(cells[i].data)
		}
	}
	if id == "" || (r.entryCol != "" && entry == "") {
		return "", "", fmt.Errorf("table %s: row without key", r.name)
	}
	return id, entry, nil
}

// op is one row effect on a profile.
type op struct {
	table   *relation
	id      string
	entry   string
	del     bool
	fields  map[string]any // set: column -> decoded value
	remove  []string       // NULL columns (customers only)
	lsn     uint64
	trunc   []*relation // a TRUNCATE barrier when non-empty
	commits time.Time   // commit time, for latency accounting
	merged  []time.Time // commit times of earlier transactions' changes merged into this one
}

func (o *op) key() string { return o.table.name + "\x00" + o.id + "\x00" + o.entry }

// upsertOp builds the effect of an inserted or updated row. Unchanged TOASTed columns are
// neither set nor removed, so the profile keeps their value.
func (r *relation) upsertOp(cells []cell) (*op, error) {
	id, entry, err := r.rowKey(cells)
	if err != nil {
		return nil, err
	}
	o := &op{table: r, id: id, entry: entry, fields: make(map[string]any, len(r.cols))}
	for i, c := range r.cols {
		if c.name == r.idCol || c.name == r.entryCol {
			continue
		}
		name := c.name
		switch cells[i].kind {
		case cellUnchanged:
		case cellNull:
			if r.entryCol == "" {
				o.remove = append(o.remove, name)
			}
		case cellText:
			v, err := decodeText(c.oid, cells[i].data)
			if err != nil {
				return nil, fmt.Errorf("table %s column %s: %w", r.name, c.name, err)
			}
			o.fields[name] = v
		default:
			return nil, fmt.Errorf("table %s column %s: unsupported tuple data kind %q", r.name, c.name, cells[i].kind)
		}
	}
	return o, nil
}

func (r *relation) deleteOp(cells []cell) (*op, error) {
	id, entry, err := r.rowKey(cells)
	if err != nil {
		return nil, err
	}
	o := &op{table: r, id: id, entry: entry, del: true}
	if r.entryCol == "" {
		o.remove = r.crmColumns()
	}
	return o, nil
}

// merge folds a later change of the same row in one transaction into o.
func (o *op) merge(next *op) {
	if next.del || o.del {
		*o = *next
		return
	}
	removed := make(map[string]bool, len(next.remove))
	for _, k := range next.remove {
		delete(o.fields, k)
		removed[k] = true
	}
	keep := o.remove[:0]
	for _, k := range o.remove {
		if _, set := next.fields[k]; !set && !removed[k] {
			keep = append(keep, k)
		}
	}
	o.remove = append(keep, next.remove...)
	for k, v := range next.fields {
		o.fields[k] = v
	}
	o.table = next.table
}

var typeMap = pgtype.NewMap()

// decodeText turns a column's text representation into the value stored on the profile: JSON
// as maps and lists, booleans and finite numbers as such, timestamps as RFC 3339 UTC strings,
// everything else as its text.
func decodeText(oid uint32, data []byte) (any, error) {
	s := string(data)
	switch oid {
	case pgtype.BoolOID:
		return s == "t", nil
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, err
		}
		return n, nil
	case pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return s, nil
		}
		return f, nil
	case pgtype.JSONOID, pgtype.JSONBOID:
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("decode json: %w", err)
		}
		return v, nil
	case pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID:
		var t pgtype.Timestamptz
		if oid == pgtype.TimestamptzOID && typeMap.Scan(oid, pgtype.TextFormatCode, data, &t) == nil && t.Valid && t.InfinityModifier == pgtype.Finite {
			return t.Time.UTC().Format(time.RFC3339Nano), nil
		}
		return s, nil
	default:
		return s, nil
	}
}
