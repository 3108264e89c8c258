package stream

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"google.golang.org/protobuf/encoding/protowire"
)

// Record aggregation in the format of the Kinesis Producer Library (KPL): many user records
// in one Kinesis record, each keeping its own partition key. A Kinesis record is billed and
// throttled per record (1 000 records/s per shard), so a campaign's 100 000 outcome events as
// single records take a 4-shard stream's whole write capacity for 25 s; aggregated, they are
// about a thousandth of that. The consumer deaggregates every record it reads (Deaggregate),
// so KPL-aggregated records from other producers work too.
//
// The format: the magic bytes F3 89 9A C2, a protobuf AggregatedRecord, and the MD5 of the
// protobuf bytes:
//
//	message AggregatedRecord {
//	  repeated string partition_key_table     = 1;
//	  repeated string explicit_hash_key_table = 2;
//	  repeated Record records                 = 3;
//	}
//	message Record {
//	  required uint64 partition_key_index     = 1;
//	  optional uint64 explicit_hash_key_index = 2;
//	  required bytes  data                    = 3;
//	  repeated Tag    tags                    = 4;
//	}

// AggregateMaxBytes bounds one aggregated record (the KPL's default): large enough that a
// batch of outcome events is a few records, small enough that a consumer's GetRecords page
// (at most 10 MB) holds many.
const AggregateMaxBytes = 50 << 10

var kplMagic = []byte{0xf3, 0x89, 0x9a, 0xc2}

// aggregate builds one KPL aggregated record of records (their partition keys and data).
func aggregate(records []Record) []byte {
	keys := map[string]uint64{}
	var table []string
	var body []byte
	for _, r := range records {
		if _, ok := keys[r.PartitionKey]; !ok {
			keys[r.PartitionKey] = uint64(len(table))
			table = append(table, r.PartitionKey)
		}
	}
	for _, k := range table {
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendString(body, k)
	}
	for _, r := range records {
		var sub []byte
		sub = protowire.AppendTag(sub, 1, protowire.VarintType)
		sub = protowire.AppendVarint(sub, keys[r.PartitionKey])
		sub = protowire.AppendTag(sub, 3, protowire.BytesType)
		sub = protowire.AppendBytes(sub, r.Data)
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, sub)
	}
	sum := md5.Sum(body)
	out := make([]byte, 0, len(kplMagic)+len(body)+len(sum))
	return append(append(append(out, kplMagic...), body...), sum[:]...)
}

// aggregatedSize is what adding a record of key and data to an aggregate adds at most (a new
// key-table entry, the record's framing).
func aggregatedSize(key string, data []byte) int {
	k := 1 + protowire.SizeBytes(len(key))
	sub := 1 + protowire.SizeVarint(1<<20) + 1 + protowire.SizeBytes(len(data))
	return k + 1 + protowire.SizeBytes(sub)
}

// ErrBadAggregate matches the error of a record that has the KPL magic but is not a valid
// aggregated record (a checksum mismatch, a malformed message).
var ErrBadAggregate = errors.New("malformed KPL aggregated record")

// Deaggregate returns the user records of a KPL aggregated record, in order, each with the
// Kinesis record's sequence number and arrival time and its own partition key; a record that is
// not aggregated is returned as it is. A corrupt aggregate is an error matching ErrBadAggregate.
func Deaggregate(r Record) ([]Record, error) {
	d := r.Data
	if len(d) < len(kplMagic)+md5.Size || !bytes.Equal(d[:len(kplMagic)], kplMagic) {
		return []Record{r}, nil
	}
	body, sum := d[len(kplMagic):len(d)-md5.Size], d[len(d)-md5.Size:]
	if got := md5.Sum(body); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%w: MD5 mismatch", ErrBadAggregate)
	}
	var keys []string
	var subs []subRecord
	err := fields(body, "aggregate", func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n, err := bytesValue(b, "partition key table")
			keys = append(keys, string(v))
			return n, err
		case num == 3 && typ == protowire.BytesType:
			v, n, err := bytesValue(b, "record")
			if err != nil {
				return 0, err
			}
			sub, err := parseSubRecord(v)
			subs = append(subs, sub)
			return n, err
		}
		return 0, nil
	})
	if err != nil {
		return nil, err
	}
	if len(subs) == 0 {
		return nil, fmt.Errorf("%w: no records", ErrBadAggregate)
	}
	out := make([]Record, len(subs))
	for i, s := range subs {
		if s.key >= uint64(len(keys)) {
			return nil, fmt.Errorf("%w: record %d: partition key index %d of %d keys", ErrBadAggregate, i, s.key, len(keys))
		}
		out[i] = Record{PartitionKey: keys[s.key], Data: s.data, SequenceNumber: r.SequenceNumber, Arrival: r.Arrival}
	}
	return out, nil
}

type subRecord struct {
	key     uint64
	data    []byte
	hasData bool
}

func parseSubRecord(b []byte) (subRecord, error) {
	var s subRecord
	err := fields(b, "record", func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, fmt.Errorf("%w: record key index: %v", ErrBadAggregate, protowire.ParseError(n))
			}
			s.key = v
			return n, nil
		case num == 3 && typ == protowire.BytesType:
			v, n, err := bytesValue(b, "record data")
			s.data, s.hasData = v, true
			return n, err
		}
		return 0, nil
	})
	if err == nil && !s.hasData {
		err = fmt.Errorf("%w: a record without data", ErrBadAggregate)
	}
	return s, err
}

// fields walks the fields of a protobuf message (what names it in errors): f gets each field's
// number, wire type and the bytes from its value on, and returns how many bytes the value took,
// or 0 for a field it does not read (skipped).
func fields(b []byte, what string, f func(num protowire.Number, typ protowire.Type, b []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %s: %v", ErrBadAggregate, what, protowire.ParseError(n))
		}
		b = b[n:]
		n, err := f(num, typ, b)
		if err != nil {
			return err
		}
		if n == 0 {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("%w: %s field %d: %v", ErrBadAggregate, what, num, protowire.ParseError(n))
			}
		}
		b = b[n:]
	}
	return nil
}

// bytesValue reads a length-delimited value.
func bytesValue(b []byte, what string) ([]byte, int, error) {
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, fmt.Errorf("%w: %s: %v", ErrBadAggregate, what, protowire.ParseError(n))
	}
	return v, n, nil
}

// ShardLister is the part of the Kinesis client an aggregating producer needs besides
// PutRecords: the open shards' hash key ranges.
type ShardLister interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
}

// shardMap predicts the shard of a partition key (Kinesis maps the key's MD5, a 128-bit
// number, into the open shards' hash key ranges), so the producer aggregates only records of
// one shard and one customer's events keep their order. A put that lands elsewhere (the stream
// was resharded) makes it stale; the next Send lists the shards again.
type shardMap struct {
	lister ShardLister
	stream string
	ttl    time.Duration

	mu       sync.Mutex
	ranges   []shardRange // by start
	loadedAt time.Time
	stale    bool
}

// shardRange is an open shard's hash key range, its ends as 128-bit big-endian numbers (the
// form of a partition key's MD5) and its start as Kinesis writes it (an explicit hash key).
type shardRange struct {
	id         string
	start, end [md5.Size]byte
	startKey   string
}

func (m *shardMap) load(ctx context.Context) ([]shardRange, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ranges != nil && !m.stale && time.Since(m.loadedAt) < m.ttl {
		return m.ranges, nil
	}
	var ranges []shardRange
	in := &kinesis.ListShardsInput{StreamName: aws.String(m.stream)}
	for {
		out, err := m.lister.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list shards of %s: %w", m.stream, err)
		}
		for _, s := range out.Shards {
			if s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil {
				continue // closed by a split or merge: takes no new records
			}
			var start, end *big.Int
			ok := s.HashKeyRange != nil
			if ok {
				var ok1, ok2 bool
				start, ok1 = new(big.Int).SetString(aws.ToString(s.HashKeyRange.StartingHashKey), 10)
				end, ok2 = new(big.Int).SetString(aws.ToString(s.HashKeyRange.EndingHashKey), 10)
				ok = ok1 && ok2
			}
			if !ok {
				return nil, fmt.Errorf("list shards of %s: shard %s has no valid hash key range", m.stream, aws.ToString(s.ShardId))
			}
			r := shardRange{id: aws.ToString(s.ShardId), startKey: start.String()}
			if start.Sign() < 0 || end.Sign() < 0 || start.BitLen() > 128 || end.BitLen() > 128 {
				return nil, fmt.Errorf("list shards of %s: shard %s's hash key range is not 128-bit", m.stream, r.id)
			}
			start.FillBytes(r.start[:])
			end.FillBytes(r.end[:])
			ranges = append(ranges, r)
		}
		if out.NextToken == nil {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("list shards of %s: no open shard", m.stream)
	}
	sort.Slice(ranges, func(i, j int) bool { return bytes.Compare(ranges[i].start[:], ranges[j].start[:]) < 0 })
	m.ranges, m.stale, m.loadedAt = ranges, false, time.Now()
	return ranges, nil
}

func (m *shardMap) invalidate() {
	m.mu.Lock()
	m.stale = true
	m.mu.Unlock()
}

// shardOf returns the index in ranges of the shard that takes key.
func shardOf(ranges []shardRange, key string) int {
	h := md5.Sum([]byte(key))
	i := sort.Search(len(ranges), func(i int) bool { return bytes.Compare(ranges[i].end[:], h[:]) >= 0 })
	if i == len(ranges) || bytes.Compare(ranges[i].start[:], h[:]) > 0 {
		return 0 // a gap in the ranges (mid-reshard): any shard; the put's answer corrects the map
	}
	return i
}
