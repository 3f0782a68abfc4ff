package chstore

// The replicated cluster layout (ADR 0026). Tables are Replicated*MergeTree on every node of a ClickHouse
// cluster, sharded by district, with a Distributed table of the same name over each: readers query the
// names they always did. The aggregator inserts each batch into events_input, a Distributed table over a
// Null table on every node; materialized views copy the block into events_local and aggregate it into each
// rollup's local table. Every one of those tables deduplicates a block identical to one it already holds
// (replicated insert deduplication), each on its own, so inserting the same block again completes what a
// failed insert left undone and repeats nothing.
//
// What makes a retried block identical is that the batch is fixed before it is inserted: its partition
// and offset range are written to Keeper (the cluster's ZooKeeper) as an intent, with a compare-and-set on
// the partition's node, and the rows are a pure function of the records in that range. The intent is
// cleared, and the partition's next offset moved past the range, only after the insert succeeded. A
// consumer taking a partition over finds an intent still open and inserts that range again, read from
// Kafka, before it resumes. The node's version fences a consumer that lost its partition: its next
// compare-and-set fails, and its insert, if one was in flight, carries the same block as the new owner's.

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing/fstest"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kgo"
)

//go:embed cluster/*.sql
var clusterMigrations embed.FS

// ClusterConfig chooses the replicated cluster layout; a zero ClusterConfig is the single-server layout.
type ClusterConfig struct {
	// Name is the cluster of the servers' remote_servers that the tables are created ON CLUSTER, sharded
	// and replicated over.
	Name string
	// Keeper lists the addresses (host:port) of the ZooKeeper or ClickHouse Keeper ensemble the cluster
	// uses, where the aggregator keeps each partition's offset and open intent.
	Keeper []string
	// KeeperRoot is the node under which they are kept; DefaultKeeperRoot(database) when empty.
	KeeperRoot string
	// SessionTimeout of the Keeper session; 10s when zero.
	SessionTimeout time.Duration
}

// Enabled reports whether the cluster layout is chosen.
func (c ClusterConfig) Enabled() bool { return c.Name != "" }

// DefaultKeeperRoot is where a database's offsets are kept in Keeper unless configured otherwise.
func DefaultKeeperRoot(database string) string { return "/edtech/aggregator/" + database }

// MigrateCluster creates the cluster layout's tables in database on every node of the cluster, which
// conn (a connection to any node, with database as its default) must belong to. The database is created
// ON CLUSTER first. Re-running it is a no-op.
func MigrateCluster(ctx context.Context, conn driver.Conn, database, cluster string) error {
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+chutil.QuoteIdent(database)+" ON CLUSTER "+chutil.QuoteIdent(cluster)); err != nil {
		return fmt.Errorf("creating database %s on cluster %s: %w", database, cluster, err)
	}
	rendered, err := renderClusterMigrations(database, cluster)
	if err != nil {
		return err
	}
	if err := chutil.Migrate(ctx, conn, database, rendered); err != nil {
		return fmt.Errorf("migrating clickhouse database %s on cluster %s: %w", database, cluster, err)
	}
	return nil
}

// renderClusterMigrations fills the database and cluster names into the cluster layout's migrations.
func renderClusterMigrations(database, cluster string) (fs.FS, error) {
	entries, err := fs.ReadDir(clusterMigrations, "cluster")
	if err != nil {
		return nil, fmt.Errorf("listing cluster migrations: %w", err)
	}
	out := fstest.MapFS{}
	data := struct{ Database, Cluster string }{chutil.QuoteIdent(database), chutil.QuoteIdent(cluster)}
	for _, e := range entries {
		src, err := fs.ReadFile(clusterMigrations, path.Join("cluster", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", e.Name(), err)
		}
		tmpl, err := template.New(e.Name()).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", e.Name(), err)
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("rendering %s: %w", e.Name(), err)
		}
		out[e.Name()] = &fstest.MapFile{Data: b.Bytes()}
	}
	return out, nil
}

// Reread reads the records of one partition with offsets from through through (both included), as the
// consumer read them: a read_committed reader's data records (kafkax.ReadRange).
type Reread func(ctx context.Context, topic string, partition int32, from, through int64) ([]*kgo.Record, error)

// keeperState is a partition's node: the next offset to store and, while a batch is being inserted, the
// offsets it covers (From <= Through).
type keeperState struct {
	Next    int64  `json:"next"`
	From    *int64 `json:"from,omitempty"`
	Through *int64 `json:"through,omitempty"`
}

func (k keeperState) open() bool { return k.From != nil && k.Through != nil }

// keeper keeps each partition's offsets in Keeper, with the version of each node this store last saw.
type keeper struct {
	conn *zk.Conn
	root string

	mu       sync.Mutex
	versions map[partKey]int32 // the node's version after this store's last read or write
}

func newKeeper(cfg ClusterConfig, database string, log *slog.Logger) (*keeper, error) {
	if len(cfg.Keeper) == 0 {
		return nil, errors.New("chstore: the cluster layout needs the Keeper (ZooKeeper) addresses")
	}
	if cfg.KeeperRoot == "" {
		cfg.KeeperRoot = DefaultKeeperRoot(database)
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	conn, _, err := zk.Connect(cfg.Keeper, cfg.SessionTimeout, zk.WithLogger(zkLogger{log}), zk.WithLogInfo(false))
	if err != nil {
		return nil, fmt.Errorf("connecting to keeper %v: %w", cfg.Keeper, err)
	}
	return &keeper{conn: conn, root: strings.TrimSuffix(cfg.KeeperRoot, "/"), versions: map[partKey]int32{}}, nil
}

// zkLogger passes the ZooKeeper client's messages to the store's log at debug level.
type zkLogger struct{ log *slog.Logger }

func (l zkLogger) Printf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }

func (k *keeper) path(topic string, partition int32) string {
	return k.root + "/" + topic + "/" + strconv.Itoa(int(partition))
}

// get reads a partition's node; ok is false when the partition was never stored.
func (k *keeper) get(ctx context.Context, topic string, partition int32) (st keeperState, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return st, false, err
	}
	data, stat, err := k.conn.Get(k.path(topic, partition))
	if errors.Is(err, zk.ErrNoNode) {
		k.mu.Lock()
		delete(k.versions, partKey{topic, partition})
		k.mu.Unlock()
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("reading the offsets of %s/%d in keeper: %w", topic, partition, err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, false, fmt.Errorf("reading the offsets of %s/%d in keeper: %w", topic, partition, err)
	}
	k.mu.Lock()
	k.versions[partKey{topic, partition}] = stat.Version
	k.mu.Unlock()
	return st, true, nil
}

// set replaces a partition's node if it is still at the version this store last saw (creating it if
// the store saw none), and returns ErrBusy if another writer changed it in between.
func (k *keeper) set(ctx context.Context, topic string, partition int32, st keeperState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding keeper state: %w", err)
	}
	key := partKey{topic, partition}
	k.mu.Lock()
	version, seen := k.versions[key]
	k.mu.Unlock()
	p := k.path(topic, partition)
	var stat *zk.Stat
	if seen {
		stat, err = k.conn.Set(p, data, version)
	} else {
		if err = k.ensureParents(p); err == nil {
			_, err = k.conn.Create(p, data, 0, zk.WorldACL(zk.PermAll))
		}
		stat = &zk.Stat{Version: 0}
	}
	if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNodeExists) {
		k.mu.Lock()
		delete(k.versions, key)
		k.mu.Unlock()
		return fmt.Errorf("%w: %s/%d was written by another consumer", ErrBusy, topic, partition)
	}
	if err != nil {
		// The write may have landed: forget the version, so the next attempt reads the node again.
		k.mu.Lock()
		delete(k.versions, key)
		k.mu.Unlock()
		return fmt.Errorf("writing the offsets of %s/%d to keeper: %w", topic, partition, err)
	}
	k.mu.Lock()
	k.versions[key] = stat.Version
	k.mu.Unlock()
	return nil
}

func (k *keeper) ensureParents(p string) error {
	parts := strings.Split(strings.TrimPrefix(path.Dir(p), "/"), "/")
	cur := ""
	for _, part := range parts {
		cur += "/" + part
		if _, err := k.conn.Create(cur, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("creating %s in keeper: %w", cur, err)
		}
	}
	return nil
}

// seen reports whether this store holds a version of the partition's node.
func (k *keeper) seen(topic string, partition int32) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.versions[partKey{topic, partition}]
	return ok
}

func (k *keeper) forget(topic string, partitions []int32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range partitions {
		delete(k.versions, partKey{topic, p})
	}
}

// clusterNextOffsets completes each partition's open intent, if any, and returns its next offset.
func (s *Store) clusterNextOffsets(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	out := make(map[int32]int64, len(partitions))
	for _, p := range partitions {
		next, ok, err := s.settle(ctx, topic, p)
		if err != nil {
			return nil, err
		}
		if ok {
			out[p] = next
		}
	}
	return out, nil
}

// settle reads the partition's node and, if an insert is open there, inserts its range again and closes
// it. It returns the partition's next offset; ok is false for a partition never stored.
func (s *Store) settle(ctx context.Context, topic string, p int32) (int64, bool, error) {
	l := s.partLock(topic, p)
	l.Lock()
	defer l.Unlock()
	st, ok, err := s.keeper.get(ctx, topic, p)
	if err != nil || !ok || !st.open() {
		return st.Next, ok, err
	}
	from, through := *st.From, *st.Through
	if s.reread == nil {
		return 0, false, fmt.Errorf("%s/%d has an open insert of offsets %d-%d and the store cannot read them again", topic, p, from, through)
	}
	recs, err := s.reread(ctx, topic, p, from, through)
	if err != nil {
		return 0, false, fmt.Errorf("reading offsets %d-%d of %s/%d again: %w", from, through, topic, p, err)
	}
	rows, err := s.clusterRows(topic, recs, true)
	if err != nil {
		return 0, false, err
	}
	s.log.Info("inserting an open batch again", "kafka_topic", topic, "partition", p, "from", from, "through", through, "rows", len(rows))
	if err := s.insertInput(ctx, rows); err != nil {
		return 0, false, err
	}
	done := keeperState{Next: through + 1}
	if err := s.keeper.set(ctx, topic, p, done); err != nil {
		return 0, false, err
	}
	return done.Next, true, nil
}

// clusterRows turns records into events rows. Records refused before (their stand-ins dead-lettered) are
// skipped when again is set, as their stand-ins were.
func (s *Store) clusterRows(topic string, recs []*kgo.Record, again bool) ([]eventRow, error) {
	rows := make([]eventRow, 0, len(recs))
	for _, rec := range recs {
		row, reason, err := s.row(topic, rec)
		if errors.Is(err, errRetry) {
			return nil, err
		}
		if dlq, ok := refusals[reason]; ok && !again {
			return nil, kafkax.Poison(rec.Offset, dlq, fmt.Errorf("the aggregator cannot store it (%s): %w", reason, err))
		}
		if reason == "" {
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// insertInput inserts rows into events_input, one block, waiting until every shard has it.
func (s *Store) insertInput(ctx context.Context, rows []eventRow) error {
	if len(rows) == 0 {
		return nil
	}
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO events_input ("+eventColumns+")")
	if err != nil {
		return fmt.Errorf("preparing insert into events_input: %w", err)
	}
	for i := range rows {
		if err := batch.AppendStruct(&rows[i]); err != nil {
			err = errors.Join(fmt.Errorf("appending event %s: %w", rows[i].EventID, err), batch.Abort())
			return kafkax.Poison(int64(rows[i].KafkaOffset), records.ReasonStoreRefused, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d events into the cluster: %w", len(rows), err)
	}
	return nil
}

// clusterWrite is Write in the cluster layout: each run of records between markers is one intent, one
// insert and one closing of the intent.
func (s *Store) clusterWrite(ctx context.Context, topic string, partition int32, recs []*kgo.Record) error {
	// Refusals come first, before any intent names a range holding them.
	if _, err := s.clusterRows(topic, recs, false); err != nil {
		return err
	}
	l := s.partLock(topic, partition)
	l.Lock()
	defer l.Unlock()
	st, ok, err := s.keeper.get(ctx, topic, partition)
	if err != nil {
		return err
	}
	if ok && st.open() {
		// Someone's insert is open: the consumer re-reads NextOffsets after this, which settles it.
		return fmt.Errorf("%w: %s/%d has an open insert", ErrBusy, topic, partition)
	}
	next := recs[0].Offset
	if ok {
		next = st.Next
	}
	start := 0
	for start < len(recs) && recs[start].Offset < next {
		start++
	}
	if start > 0 {
		s.skip(ctx, SkipFenced, start)
	}
	for start < len(recs) {
		end := start
		var marker *eventRow
		for ; end < len(recs); end++ {
			row, reason, _ := s.row(topic, recs[end])
			if reason == erasure || reason == rebuildMarker {
				marker = &row
				break
			}
		}
		if end > start {
			if err := s.insertRange(ctx, topic, partition, recs[start:end]); err != nil {
				return err
			}
		}
		if marker == nil {
			break
		}
		if err := s.clusterMarker(ctx, topic, partition, recs[end], marker); err != nil {
			return err
		}
		start = end + 1
	}
	return nil
}

// insertRange stores recs (no marker among them) as one intent: open it, insert, close it.
func (s *Store) insertRange(ctx context.Context, topic string, partition int32, recs []*kgo.Record) error {
	rows, err := s.clusterRows(topic, recs, true)
	if err != nil {
		return err
	}
	from, through := recs[0].Offset, recs[len(recs)-1].Offset
	if len(rows) > 0 {
		if err := s.keeper.set(ctx, topic, partition, keeperState{Next: from, From: &from, Through: &through}); err != nil {
			return err
		}
		if err := s.insertInput(ctx, rows); err != nil {
			return err
		}
		s.inserted.Add(ctx, int64(len(rows)))
	}
	s.skip(ctx, SkipNotFact, len(recs)-len(rows))
	return s.keeper.set(ctx, topic, partition, keeperState{Next: through + 1})
}

// clusterMarker applies a marker in the cluster layout. Neither an erasure nor a district rebuild is
// applied by the cluster layout yet (ADR 0026): the partition stops at the marker, loudly, rather than
// pass it by.
func (s *Store) clusterMarker(_ context.Context, topic string, partition int32, rec *kgo.Record, _ *eventRow) error {
	return fmt.Errorf("%s/%d offset %d: %w", topic, partition, rec.Offset, ErrMarkerUnsupported)
}

// ErrMarkerUnsupported is an erasure or rebuild marker reaching a store in the cluster layout, which does
// not apply them yet.
var ErrMarkerUnsupported = errors.New("the cluster layout does not apply erasure and rebuild markers yet")

// clusterRelease forgets the partitions' node versions: their next owner reads them again.
func (s *Store) clusterRelease(topic string, partitions []int32) {
	s.keeper.forget(topic, partitions)
}

// Close ends the store's Keeper session, if it has one.
func (s *Store) Close() {
	if s.keeper != nil {
		s.keeper.conn.Close()
	}
}
