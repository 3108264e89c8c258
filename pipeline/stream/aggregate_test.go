package stream_test

import (
	"context"
	"crypto/md5"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailor-email/tailor/pipeline/stream"
)

// kplRecord builds an aggregated record as the KPL writes one, with what our producer never
// writes: an explicit hash key table, per-record explicit hash key indexes and tags, and the
// key table after the records.
func kplRecord(keys []string, recs []struct {
	key  uint64
	data string
}) []byte {
	var body []byte
	for _, r := range recs {
		var sub []byte
		sub = protowire.AppendTag(sub, 1, protowire.VarintType)
		sub = protowire.AppendVarint(sub, r.key)
		sub = protowire.AppendTag(sub, 2, protowire.VarintType)
		sub = protowire.AppendVarint(sub, 0)
		sub = protowire.AppendTag(sub, 3, protowire.BytesType)
		sub = protowire.AppendString(sub, r.data)
		var tag []byte
		tag = protowire.AppendTag(tag, 1, protowire.BytesType)
		tag = protowire.AppendString(tag, "origin")
		sub = protowire.AppendTag(sub, 4, protowire.BytesType)
		sub = protowire.AppendBytes(sub, tag)
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, sub)
	}
	body = protowire.AppendTag(body, 2, protowire.BytesType)
	body = protowire.AppendString(body, "170141183460469231731687303715884105728")
	for _, k := range keys {
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendString(body, k)
	}
	sum := md5.Sum(body)
	return append(append([]byte{0xf3, 0x89, 0x9a, 0xc2}, body...), sum[:]...)
}

func TestDeaggregate_ReadsKPLRecordsAndRefusesCorruptOnes(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	raw := kplRecord([]string{"c1", "c2"}, []struct {
		key  uint64
		data string
	}{{0, `{"n":1}`}, {1, `{"n":2}`}, {0, `{"n":3}`}})
	got, err := stream.Deaggregate(stream.Record{PartitionKey: "c1", Data: raw, SequenceNumber: "42", Arrival: at})
	require.NoError(t, err)
	require.Equal(t, []stream.Record{
		{PartitionKey: "c1", Data: []byte(`{"n":1}`), SequenceNumber: "42", Arrival: at},
		{PartitionKey: "c2", Data: []byte(`{"n":2}`), SequenceNumber: "42", Arrival: at},
		{PartitionKey: "c1", Data: []byte(`{"n":3}`), SequenceNumber: "42", Arrival: at},
	}, got)

	plain := stream.Record{PartitionKey: "c", Data: []byte(`{"n":1}`), SequenceNumber: "7"}
	got, err = stream.Deaggregate(plain)
	require.NoError(t, err)
	require.Equal(t, []stream.Record{plain}, got, "a plain record is itself")

	flipped := append([]byte{}, raw...)
	flipped[10] ^= 1
	_, err = stream.Deaggregate(stream.Record{Data: flipped})
	require.ErrorIs(t, err, stream.ErrBadAggregate)
	require.ErrorContains(t, err, "MD5 mismatch")
	badIndex := kplRecord([]string{"c1"}, []struct {
		key  uint64
		data string
	}{{3, `{}`}})
	_, err = stream.Deaggregate(stream.Record{Data: badIndex})
	require.ErrorContains(t, err, "partition key index 3 of 1 keys")
	empty := kplRecord([]string{"c1"}, nil)
	_, err = stream.Deaggregate(stream.Record{Data: empty})
	require.ErrorContains(t, err, "no records")
}

// shardedKinesis has two open shards split at 2^127 (and a closed parent), routes puts as
// Kinesis does (the explicit hash key, else the MD5 of the partition key) and keeps what each
// shard got. wrongShard makes it answer with another shard id, as after a reshard.
type shardedKinesis struct {
	mu         sync.Mutex
	lists      int
	entries    [][]ktypes.PutRecordsRequestEntry // per call
	byShard    map[string][]stream.Record        // user records, deaggregated
	wrongShard bool
}

var half = new(big.Int).Lsh(big.NewInt(1), 127)

func (f *shardedKinesis) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	maxKey := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	return &kinesis.ListShardsOutput{Shards: []ktypes.Shard{
		{ShardId: aws.String("shardId-000000000000"), HashKeyRange: &ktypes.HashKeyRange{StartingHashKey: aws.String("0"), EndingHashKey: aws.String(maxKey.String())},
			SequenceNumberRange: &ktypes.SequenceNumberRange{StartingSequenceNumber: aws.String("1"), EndingSequenceNumber: aws.String("9")}},
		{ShardId: aws.String("shardId-000000000002"), HashKeyRange: &ktypes.HashKeyRange{StartingHashKey: aws.String(half.String()), EndingHashKey: aws.String(maxKey.String())},
			SequenceNumberRange: &ktypes.SequenceNumberRange{StartingSequenceNumber: aws.String("10")}},
		{ShardId: aws.String("shardId-000000000001"), HashKeyRange: &ktypes.HashKeyRange{StartingHashKey: aws.String("0"), EndingHashKey: aws.String(new(big.Int).Sub(half, big.NewInt(1)).String())},
			SequenceNumberRange: &ktypes.SequenceNumberRange{StartingSequenceNumber: aws.String("10")}},
	}}, nil
}

func (f *shardedKinesis) PutRecords(_ context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, in.Records)
	out := &kinesis.PutRecordsOutput{}
	for _, e := range in.Records {
		h, _ := new(big.Int).SetString(aws.ToString(e.ExplicitHashKey), 10)
		if e.ExplicitHashKey == nil {
			sum := md5.Sum([]byte(aws.ToString(e.PartitionKey)))
			h = new(big.Int).SetBytes(sum[:])
		}
		shard := "shardId-000000000001"
		if h.Cmp(half) >= 0 {
			shard = "shardId-000000000002"
		}
		subs, err := stream.Deaggregate(stream.Record{PartitionKey: aws.ToString(e.PartitionKey), Data: e.Data})
		if err != nil {
			return nil, err
		}
		f.byShard[shard] = append(f.byShard[shard], subs...)
		if f.wrongShard {
			shard = "shardId-000000000099"
		}
		out.Records = append(out.Records, ktypes.PutRecordsResultEntry{SequenceNumber: aws.String("1"), ShardId: aws.String(shard)})
	}
	return out, nil
}

func shardOfKey(key string) string {
	sum := md5.Sum([]byte(key))
	if new(big.Int).SetBytes(sum[:]).Cmp(half) >= 0 {
		return "shardId-000000000002"
	}
	return "shardId-000000000001"
}

func TestProducer_AggregatesTheRecordsOfEachShard(t *testing.T) {
	t.Parallel()
	fk := &shardedKinesis{byShard: map[string][]stream.Record{}}
	p, err := stream.NewProducer(fk, stream.ProducerConfig{Stream: "s", Aggregate: true, ShardMapTTL: time.Hour})
	require.NoError(t, err)
	records := make([]stream.Record, 1000)
	for i := range records {
		records[i] = stream.Record{PartitionKey: fmt.Sprintf("c%d", i%50), Data: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	records[500].Data = make([]byte, 60<<10) // beyond an aggregate's size: put alone
	results, err := p.Send(t.Context(), records)
	require.NoError(t, err)
	for i, r := range results {
		require.NoError(t, r, "record %d", i)
	}
	require.Len(t, fk.entries, 1, "one call")
	// The big record's shard: the aggregate before it, the record alone, the aggregate after
	// it (its order kept); the other shard: one aggregate.
	require.Equal(t, 4, len(fk.entries[0]), "entries of the call")
	got := 0
	for shard, rs := range fk.byShard {
		last := map[string]int{}
		for _, r := range rs {
			require.Equal(t, shard, shardOfKey(r.PartitionKey), "%s landed in its own shard", r.PartitionKey)
			got++
			var n int
			if _, err := fmt.Sscanf(string(r.Data), `{"n":%d}`, &n); err != nil {
				continue // the big record
			}
			if prev, ok := last[r.PartitionKey]; ok {
				require.Greater(t, n, prev, "%s keeps its order", r.PartitionKey)
			}
			last[r.PartitionKey] = n
		}
	}
	require.Equal(t, len(records), got, "every record once")

	// A put that lands in another shard than the map says makes the next Send list shards again.
	require.Equal(t, 1, fk.lists)
	_, err = p.Send(t.Context(), records[:10])
	require.NoError(t, err)
	require.Equal(t, 1, fk.lists, "within its TTL the map is trusted")
	fk.wrongShard = true
	_, err = p.Send(t.Context(), records[:10])
	require.NoError(t, err)
	fk.wrongShard = false
	_, err = p.Send(t.Context(), records[:10])
	require.NoError(t, err)
	require.Equal(t, 2, fk.lists, "a surprise answer made the map stale")
}

func TestProducer_AggregateNeedsAShardLister(t *testing.T) {
	t.Parallel()
	_, err := stream.NewProducer(&flakyKinesis{}, stream.ProducerConfig{Stream: "s", Aggregate: true})
	require.ErrorContains(t, err, "ListShards")
}

// Whatever a Kinesis record holds, Deaggregate returns its user records or an error matching
// ErrBadAggregate, never a panic; a well-formed aggregate (the seeds, and what the fuzzer makes
// of them with a fixed checksum) gives back records that name keys of its table.
func FuzzDeaggregate(f *testing.F) {
	f.Add(kplRecord([]string{"c1", "c2"}, []struct {
		key  uint64
		data string
	}{{0, `{"n":1}`}, {1, `{"n":2}`}}))
	f.Add([]byte(`{"plain":true}`))
	f.Add([]byte{0xf3, 0x89, 0x9a, 0xc2})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, raw := range [][]byte{data, withChecksum(data)} {
			got, err := stream.Deaggregate(stream.Record{PartitionKey: "p", Data: raw, SequenceNumber: "1"})
			if err != nil {
				require.ErrorIs(t, err, stream.ErrBadAggregate)
				continue
			}
			require.NotEmpty(t, got)
			for _, r := range got {
				require.Equal(t, "1", r.SequenceNumber)
			}
		}
	})
}

// withChecksum makes data's tail an aggregate's MD5 of what follows the magic, so the fuzzer
// reaches the protobuf parser.
func withChecksum(data []byte) []byte {
	body := data
	if len(body) >= 4 && string(body[:4]) == "\xf3\x89\x9a\xc2" {
		body = body[4:]
	}
	sum := md5.Sum(body)
	return append(append([]byte{0xf3, 0x89, 0x9a, 0xc2}, body...), sum[:]...)
}

// badRanges lists a shard whose hash key range is not a 128-bit number.
type badRanges struct{ *flakyKinesis }

func (badRanges) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return &kinesis.ListShardsOutput{Shards: []ktypes.Shard{{ShardId: aws.String("shardId-000000000000"),
		HashKeyRange: &ktypes.HashKeyRange{StartingHashKey: aws.String("0"), EndingHashKey: aws.String(new(big.Int).Lsh(big.NewInt(1), 130).String())}}}}, nil
}

func TestProducer_PutsOneByOneWhenTheShardMapIsUnusable(t *testing.T) {
	t.Parallel()
	fk := &flakyKinesis{failed: map[string]bool{}, accepted: map[string]int{}}
	p, err := stream.NewProducer(badRanges{fk}, stream.ProducerConfig{Stream: "s", Aggregate: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	results, err := p.Send(t.Context(), testRecords(20))
	require.NoError(t, err)
	for _, r := range results {
		require.NoError(t, r)
	}
	require.Len(t, fk.accepted, 20, "every record put on its own")
}
