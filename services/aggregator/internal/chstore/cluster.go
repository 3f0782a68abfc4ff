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
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/go-zookeeper/zk"
	"github.com/google/uuid"
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
	// Dial connects to one node of the cluster (host:port as the cluster's remote_servers name it), as the
	// store's own connection was made, with database as its default database. An erasure reads what every
	// replica holds and deletes on one replica of each shard through such connections.
	Dial func(ctx context.Context, addr string) (driver.Conn, error)
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
	dir, err := fs.Sub(clusterMigrations, "cluster")
	if err != nil {
		return err
	}
	rendered, err := chutil.RenderMigrations(dir, database, cluster)
	if err != nil {
		return err
	}
	if err := chutil.Migrate(ctx, conn, database, rendered); err != nil {
		return fmt.Errorf("migrating clickhouse database %s on cluster %s: %w", database, cluster, err)
	}
	return nil
}

// nodeSettings are the server settings (system.merge_tree_settings) the cluster layout needs on every
// node, with the least value each needs and what goes wrong below it (ADR 0026).
var nodeSettings = []struct {
	name  string
	least float64
	why   string
}{
	{"replicated_max_ratio_of_wrong_parts", 1, "a replica killed in the middle of an insert refuses to start when the parts it " +
		"never committed hold more than this share of a table's rows, which one part of a small table does"},
}

// CheckNodes reads the server settings the cluster layout needs on every node of the cluster and
// describes each one a node lacks (none in the single-server layout). A node that does not answer fails
// the check.
func (s *Store) CheckNodes(ctx context.Context) ([]string, error) {
	if s.cluster == nil {
		return nil, nil
	}
	var problems []string
	err := s.cluster.EachNode(ctx, func(ctx context.Context, n chutil.Node, conn driver.Conn) error {
		found, err := checkNode(ctx, conn)
		for _, f := range found {
			problems = append(problems, n.Addr()+": "+f)
		}
		return err
	})
	return problems, err
}

// checkNode describes each of nodeSettings that the server of conn sets below what the cluster layout
// needs.
func checkNode(ctx context.Context, conn driver.Conn) ([]string, error) {
	names := make([]string, len(nodeSettings))
	for i, want := range nodeSettings {
		names[i] = want.name
	}
	var rows []struct {
		Name  string `ch:"name"`
		Value string `ch:"value"`
	}
	if err := conn.Select(ctx, &rows, "SELECT name, value FROM system.merge_tree_settings WHERE has(?, name)", names); err != nil {
		return nil, fmt.Errorf("reading the server's merge_tree settings: %w", err)
	}
	values := make(map[string]string, len(rows))
	for _, r := range rows {
		values[r.Name] = r.Value
	}
	var problems []string
	for _, want := range nodeSettings {
		v, ok := values[want.name]
		if !ok {
			continue // a server without the setting has no such check
		}
		got, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return problems, fmt.Errorf("merge_tree setting %s = %q: %w", want.name, v, err)
		}
		if got < want.least {
			problems = append(problems, fmt.Sprintf("merge_tree setting %s is %s, want %g or more: %s (ADR 0026)", want.name, v, want.least, want.why))
		}
	}
	return problems, nil
}

// Reread reads the records of one partition with offsets from through through (both included), as the
// consumer read them: a read_committed reader's data records (kafkax.ReadRange).
type Reread func(ctx context.Context, topic string, partition int32, from, through int64) ([]*kgo.Record, error)

// keeperState is a partition's node: the next offset to store and, while a batch is being inserted, the
// offsets it covers (From <= Through).
type keeperState struct {
	Next    int64        `json:"next"`
	From    *int64       `json:"from,omitempty"`
	Through *int64       `json:"through,omitempty"`
	Erase   *eraseIntent `json:"erase,omitempty"` // an erasure marker at Next being applied
	// Swap is a district rebuild's marker at Next being applied.
	Swap *swapIntent `json:"swap,omitempty"`
}

// swapIntent is a district rebuild being swapped in on a partition: the rebuild, its district and
// staging table.
type swapIntent struct {
	Rebuild string `json:"rebuild"`
	Tenant  string `json:"tenant"`
	Staging string `json:"staging"`
}

// eraseIntent is an erasure being applied to a partition: the marker's student and tenant and the days
// the partition held of the student before anything was deleted.
type eraseIntent struct {
	Tenant  string   `json:"tenant"`
	Student string   `json:"student"`
	Days    []string `json:"days"`
}

func (k keeperState) open() bool {
	return (k.From != nil && k.Through != nil) || k.Erase != nil || k.Swap != nil
}

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
	if st.Erase != nil {
		s.log.Info("completing an erasure", "kafka_topic", topic, "partition", p, "offset", st.Next)
		if err := s.clusterErase(ctx, topic, p, *st.Erase); err != nil {
			return 0, false, err
		}
		done := keeperState{Next: st.Next + 1}
		if err := s.keeper.set(ctx, topic, p, done); err != nil {
			return 0, false, err
		}
		return done.Next, true, s.reportOffset(ctx, topic, p, st.Next)
	}
	if st.Swap != nil {
		s.log.Info("completing a district rebuild's swap", "kafka_topic", topic, "partition", p, "offset", st.Next, "rebuild", st.Swap.Rebuild)
		if err := s.clusterSwap(ctx, topic, p, st.Next, *st.Swap); err != nil {
			return 0, false, err
		}
		done := keeperState{Next: st.Next + 1}
		if err := s.keeper.set(ctx, topic, p, done); err != nil {
			return 0, false, err
		}
		return done.Next, true, s.reportOffset(ctx, topic, p, st.Next)
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
	if err := s.insertAgain(ctx, rows); err != nil {
		return 0, false, err
	}
	done := keeperState{Next: through + 1}
	if err := s.keeper.set(ctx, topic, p, done); err != nil {
		return 0, false, err
	}
	return done.Next, true, nil
}

// decoded is a record's row, or the reason it has none.
type decoded struct {
	row    eventRow
	reason string
}

// decode turns records into rows. A record refused for its content is a *kafkax.PoisonError, unless again
// is set: then it is passed by, as its stand-in was when the records were first written.
func (s *Store) decode(topic string, recs []*kgo.Record, again bool) ([]decoded, error) {
	out := make([]decoded, len(recs))
	for i, rec := range recs {
		row, reason, err := s.row(topic, rec)
		if errors.Is(err, errRetry) {
			return nil, err
		}
		if dlq, ok := refusals[reason]; ok && !again {
			return nil, kafkax.Poison(rec.Offset, dlq, fmt.Errorf("the aggregator cannot store it (%s): %w", reason, err))
		}
		row.TraceID = headerTraceID(rec)
		out[i] = decoded{row, reason}
	}
	return out, nil
}

// factRows are the rows of the decoded records that are facts.
func factRows(ds []decoded) []eventRow {
	rows := make([]eventRow, 0, len(ds))
	for _, d := range ds {
		if d.reason == "" {
			rows = append(rows, d.row)
		}
	}
	return rows
}

// clusterRows turns records read again into the rows they gave when first written.
func (s *Store) clusterRows(topic string, recs []*kgo.Record, again bool) ([]eventRow, error) {
	ds, err := s.decode(topic, recs, again)
	if err != nil {
		return nil, err
	}
	return factRows(ds), nil
}

// prepareInput prepares the insert of rows into events_input, one block that waits until every shard has
// it. A row the driver cannot take is refused with a *kafkax.PoisonError naming its offset, before
// anything is sent.
func (s *Store) prepareInput(ctx context.Context, rows []eventRow) (driver.Batch, error) {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO events_input ("+eventColumns+")")
	if err != nil {
		return nil, fmt.Errorf("preparing insert into events_input: %w", err)
	}
	for i := range rows {
		if err := batch.AppendStruct(&rows[i]); err != nil {
			err = errors.Join(fmt.Errorf("appending event %s: %w", rows[i].EventID, err), batch.Abort())
			return nil, kafkax.Poison(int64(rows[i].KafkaOffset), records.ReasonStoreRefused, err)
		}
	}
	return batch, nil
}

// sendInput sends a prepared insert.
func sendInput(batch driver.Batch, n int) error {
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d events into the cluster: %w", n, err)
	}
	return nil
}

// insertAgain inserts rows read again. A row the driver refuses was refused the first time too, before
// the intent was opened, and dead-lettered: it is left out again.
func (s *Store) insertAgain(ctx context.Context, rows []eventRow) error {
	for len(rows) > 0 {
		batch, err := s.prepareInput(ctx, rows)
		var pe *kafkax.PoisonError
		if errors.As(err, &pe) {
			rows = slices.DeleteFunc(rows, func(r eventRow) bool { return int64(r.KafkaOffset) == pe.Offset })
			continue
		}
		if err != nil {
			return err
		}
		return sendInput(batch, len(rows))
	}
	return nil
}

// clusterWrite is Write in the cluster layout: each run of records between markers is one intent, one
// insert and one closing of the intent; then the marker is applied.
func (s *Store) clusterWrite(ctx context.Context, topic string, partition int32, recs []*kgo.Record) error {
	// Refusals come first, before any intent names a range holding them.
	ds, err := s.decode(topic, recs, false)
	if err != nil {
		return err
	}
	for _, tenant := range tenantsOf(factRows(ds)) {
		// As in the single-server layout: analyst views are not part of the data and never hold it up.
		if err := s.EnsureAnalystViews(ctx, tenant); err != nil && ctx.Err() == nil {
			s.log.Warn("creating analyst views", "tenant_id", tenant, "err", err)
		}
	}
	l := s.partLock(topic, partition)
	l.Lock()
	defer l.Unlock()
	st, ok, err := s.keeper.get(ctx, topic, partition)
	if err != nil {
		return err
	}
	if ok && st.open() {
		// Another write's insert or erasure is open: the consumer re-reads NextOffsets after this error,
		// which settles it.
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
		for end < len(recs) && ds[end].reason != erasure && ds[end].reason != rebuildMarker {
			end++
		}
		if end > start {
			if err := s.insertRange(ctx, topic, partition, recs[start:end], ds[start:end]); err != nil {
				return err
			}
		}
		if end == len(recs) {
			break
		}
		if err := s.clusterMarker(ctx, topic, partition, recs[end], &ds[end].row, ds[end].reason); err != nil {
			return err
		}
		start = end + 1
	}
	return nil
}

// insertRange stores recs (no marker among them) as one intent: open it, insert, close it.
func (s *Store) insertRange(ctx context.Context, topic string, partition int32, recs []*kgo.Record, ds []decoded) error {
	rows := factRows(ds)
	from, through := recs[0].Offset, recs[len(recs)-1].Offset
	if len(rows) > 0 {
		batch, err := s.prepareInput(ctx, rows) // refusals before the intent names them
		if err != nil {
			return err
		}
		if err := s.keeper.set(ctx, topic, partition, keeperState{Next: from, From: &from, Through: &through}); err != nil {
			return errors.Join(err, batch.Abort())
		}
		if err := sendInput(batch, len(rows)); err != nil {
			return err
		}
		s.inserted.Add(ctx, int64(len(rows)))
	}
	for _, d := range ds {
		if d.reason != "" {
			s.skip(ctx, d.reason, 1)
		}
	}
	return s.keeper.set(ctx, topic, partition, keeperState{Next: through + 1})
}

// clusterMarker applies a marker in the cluster layout: a student's erasure or a district rebuild's swap.
func (s *Store) clusterMarker(ctx context.Context, topic string, partition int32, rec *kgo.Record, m *eventRow, reason string) error {
	next := keeperState{Next: rec.Offset + 1}
	if reason == rebuildMarker {
		return s.clusterRebuildMarker(ctx, topic, partition, rec.Offset, m)
	}
	// Every replica first fetches what it lacks of the events written so far (the partition's among them,
	// all written before this marker): what it reads next is then complete.
	if err := s.cluster.SyncReplicas(ctx, "events_local"); err != nil {
		return err
	}
	days, err := s.heldDays(ctx, topic, partition, m.TenantID, m.StudentID.String())
	if err != nil {
		return err
	}
	if len(days) == 0 {
		if err := s.keeper.set(ctx, topic, partition, next); err != nil {
			return err
		}
		return s.reportOffset(ctx, topic, partition, rec.Offset)
	}
	e := eraseIntent{Tenant: m.TenantID, Student: m.StudentID.String(), Days: days}
	if err := s.keeper.set(ctx, topic, partition, keeperState{Next: rec.Offset, Erase: &e}); err != nil {
		return err
	}
	if err := s.clusterErase(ctx, topic, partition, e); err != nil {
		return err
	}
	s.log.Info("student erased from the partition", "kafka_topic", topic, "partition", partition, "tenant_id", m.TenantID, "days", len(days))
	if err := s.keeper.set(ctx, topic, partition, next); err != nil {
		return err
	}
	return s.reportOffset(ctx, topic, partition, rec.Offset)
}

// reportOffset records in kafka_offsets that the partition is stored up to offset, for ctl: a marker is
// not a row, so no view records it.
func (s *Store) reportOffset(ctx context.Context, topic string, partition int32, offset int64) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO kafka_offsets (kafka_topic, kafka_partition, max_offset)")
	if err != nil {
		return fmt.Errorf("preparing insert into kafka_offsets: %w", err)
	}
	if err := batch.Append(topic, uint32(partition), uint64(offset)); err != nil {
		return errors.Join(fmt.Errorf("appending offset: %w", err), batch.Abort())
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("recording offset %d of %s/%d: %w", offset, topic, partition, err)
	}
	return nil
}

// heldDays lists the days the partition holds of a student, read from every replica of every shard: a
// replica may not have fetched the latest parts of its partner yet. It fails while a replica does not
// answer, and the erasure waits for it.
func (s *Store) heldDays(ctx context.Context, topic string, partition int32, tenant, student string) ([]string, error) {
	var days []string
	err := s.cluster.EachNode(ctx, func(ctx context.Context, _ chutil.Node, conn driver.Conn) error {
		var rows []struct {
			Day string `ch:"day"`
		}
		if err := conn.Select(ctx, &rows, "SELECT DISTINCT toString(arrayJoin([local_day, toDate(occurred_at), if(type = 'attendance', attendance_date, local_day)])) AS day "+
			"FROM "+chutil.QuoteIdent(s.cfg.Database)+".events_local WHERE kafka_topic = ? AND kafka_partition = ? AND tenant_id = ? AND student_id = toUUID(?)",
			topic, uint32(partition), tenant, student); err != nil {
			return fmt.Errorf("reading the days %s/%d holds of an erased student: %w", topic, partition, err)
		}
		for _, r := range rows {
			if !slices.Contains(days, r.Day) {
				days = append(days, r.Day)
			}
		}
		return nil
	})
	slices.Sort(days)
	return days, err
}

// clusterErase deletes the student's events of the partition and derives the rollups of the partition,
// tenant and days again from the events left, leaving the student out: a replica that has not applied
// the delete yet may answer the read. A mutation affects only the parts that exist when it is made, so
// the rows inserted after the delete stay. Every step may run again.
func (s *Store) clusterErase(ctx context.Context, topic string, partition int32, e eraseIntent) error {
	db := chutil.QuoteIdent(s.cfg.Database) + "."
	if err := s.cluster.OnEachShard(ctx, "ALTER TABLE "+db+"events_local DELETE WHERE kafka_topic = ? AND kafka_partition = ? AND tenant_id = ? AND student_id = toUUID(?)",
		topic, uint32(partition), e.Tenant, e.Student); err != nil {
		return fmt.Errorf("deleting an erased student's events: %w", err)
	}
	if err := s.cluster.WaitMutations(ctx, "events_local"); err != nil {
		return err
	}
	// The rollups are derived from a read of events through the Distributed table, which may pick any
	// replica: each must hold every row of the partition first (settling an erase intent comes here
	// without the sync above).
	if err := s.cluster.SyncReplicas(ctx, "events_local"); err != nil {
		return err
	}
	views, err := s.viewsOn(ctx, "events_input_local", "events_mv", "kafka_offsets_mv")
	if err != nil {
		return err
	}
	keys := "kafka_partition = ? AND tenant_id = ? AND day IN ?"
	source := "FROM (SELECT * FROM " + db + "events WHERE kafka_topic = ? AND kafka_partition = ? AND tenant_id = ? AND student_id != toUUID(?) " +
		"AND (local_day IN ? OR toDate(occurred_at) IN ? OR attendance_date IN ?)) "
	ictx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1, "insert_deduplicate": 0}))
	for _, v := range views {
		if err := s.cluster.OnEachShard(ctx, "ALTER TABLE "+db+chutil.QuoteIdent(v.target)+" DELETE WHERE "+keys, uint32(partition), e.Tenant, set(e.Days)); err != nil {
			return fmt.Errorf("deleting %s's rows of an erased student's days: %w", v.target, err)
		}
		// Until the delete is done everywhere a reader would count both the old rows and the new.
		if err := s.cluster.WaitMutations(ctx, v.target); err != nil {
			return err
		}
		query := v.query[:v.from[0]] + source + v.query[v.from[1]:]
		cols := make([]string, len(v.columns))
		for i, c := range v.columns {
			cols[i] = chutil.QuoteIdent(c)
		}
		list := strings.Join(cols, ", ")
		dist := db + chutil.QuoteIdent(strings.TrimSuffix(v.target, "_local"))
		insert := "INSERT INTO " + dist + " (" + list + ") SELECT " + list + " FROM (" + query + ") WHERE " + keys
		if err := s.conn.Exec(ictx, insert, topic, uint32(partition), e.Tenant, e.Student, set(e.Days), set(e.Days), set(e.Days),
			uint32(partition), e.Tenant, set(e.Days)); err != nil {
			return fmt.Errorf("deriving %s's rows of an erased student's days again: %w", v.target, err)
		}
	}
	return nil
}

// clusterRebuildMarker swaps a district's rows of the partition for a rebuild's staged ones at the
// rebuild's marker, as swapDistrict does on one server, under an intent in Keeper: a swap cut short is
// done again whole by the partition's next owner.
func (s *Store) clusterRebuildMarker(ctx context.Context, topic string, partition int32, offset int64, m *eventRow) error {
	next := keeperState{Next: offset + 1}
	log := s.log.With("rebuild", m.EventID.String(), "tenant_id", m.TenantID, "kafka_topic", topic, "partition", partition, "offset", offset)
	// A replica may not have fetched the rebuild's latest row yet: ask every replica to.
	if err := s.cluster.SyncReplicas(ctx, "district_rebuilds_local"); err != nil {
		return err
	}
	r, swap, err := rebuildAt(ctx, s.conn, m, s.cfg.RebuildWait, log)
	if err != nil {
		return err
	}
	if swap {
		sw := swapIntent{Rebuild: r.ID, Tenant: r.TenantID, Staging: r.Staging}
		if err := s.keeper.set(ctx, topic, partition, keeperState{Next: offset, Swap: &sw}); err != nil {
			return err
		}
		if err := s.clusterSwap(ctx, topic, partition, offset, sw); err != nil {
			return err
		}
		log.Info("district's rows of the partition swapped for the rebuilt ones")
	}
	if err := s.keeper.set(ctx, topic, partition, next); err != nil {
		return err
	}
	return s.reportOffset(ctx, topic, partition, offset)
}

// clusterSwap deletes the district's rows of the partition from events_local and every rollup on every
// replica, then inserts its staged rows before the marker (at offset) into events_input: the views derive
// the rollups from them as from any insert. A swap cut short may have left some of its insert, or have one
// still running on a server whose client died: every node is asked to finish the swap's inserts first, and
// the deletes then remove whatever they wrote. The insert is not deduplicated, as it follows a delete of
// rows that identical blocks may once have written.
func (s *Store) clusterSwap(ctx context.Context, topic string, partition int32, offset int64, sw swapIntent) error {
	prefix := "rebuild:" + sw.Rebuild + ":" + topic + ":" + strconv.Itoa(int(partition)) + ":"
	if err := s.waitNodeQueries(ctx, prefix); err != nil {
		return err
	}
	db := chutil.QuoteIdent(s.cfg.Database) + "."
	if err := s.cluster.OnEachShard(ctx, "ALTER TABLE "+db+"events_local DELETE WHERE kafka_topic = ? AND kafka_partition = ? AND tenant_id = ?",
		topic, uint32(partition), sw.Tenant); err != nil {
		return fmt.Errorf("deleting the district's events of the partition: %w", err)
	}
	if err := s.cluster.WaitMutations(ctx, "events_local"); err != nil {
		return err
	}
	views, err := s.viewsOn(ctx, "events_input_local", "events_mv", "kafka_offsets_mv")
	if err != nil {
		return err
	}
	for _, v := range views {
		if err := s.cluster.OnEachShard(ctx, "ALTER TABLE "+db+chutil.QuoteIdent(v.target)+" DELETE WHERE tenant_id = ? AND kafka_partition = ?",
			sw.Tenant, uint32(partition)); err != nil {
			return fmt.Errorf("deleting the district's rows of %s: %w", v.target, err)
		}
		if err := s.cluster.WaitMutations(ctx, v.target); err != nil {
			return err
		}
	}
	// The read of the staging table may pick either replica of its shard.
	if err := s.cluster.SyncReplicas(ctx, sw.Staging+"_local"); err != nil {
		return err
	}
	ictx := clickhouse.Context(ctx, clickhouse.WithQueryID(prefix+uuid.NewString()),
		clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1, "insert_deduplicate": 0}))
	if err := s.conn.Exec(ictx, "INSERT INTO "+db+"events_input SELECT * FROM "+db+chutil.QuoteIdent(sw.Staging)+
		" WHERE kafka_topic = ? AND kafka_partition = ? AND tenant_id = ? AND kafka_offset < ?",
		topic, uint32(partition), sw.Tenant, uint64(offset)); err != nil {
		return fmt.Errorf("inserting the rebuilt rows of the district: %w", err)
	}
	return nil
}

// waitNodeQueries waits until no node of the cluster runs a query whose id, or whose initial query's id,
// starts with prefix. A node that does not answer makes it fail: the caller tries again.
func (s *Store) waitNodeQueries(ctx context.Context, prefix string) error {
	return s.cluster.EachNode(ctx, func(ctx context.Context, _ chutil.Node, conn driver.Conn) error {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			var running uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE startsWith(query_id, ?) OR startsWith(initial_query_id, ?)",
				prefix, prefix).Scan(&running); err != nil {
				return fmt.Errorf("reading the running queries: %w", err)
			}
			if running == 0 {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	})
}

// clusterRelease forgets the partitions' node versions: their next owner reads them again.
func (s *Store) clusterRelease(topic string, partitions []int32) {
	s.keeper.forget(topic, partitions)
}

// Close ends the store's Keeper session, if it has one.
func (s *Store) Close() {
	if s.keeper != nil {
		s.keeper.conn.Close()
	}
	if s.cluster != nil {
		s.cluster.Close()
	}
}
