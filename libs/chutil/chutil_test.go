package chutil_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

func exec(t *testing.T, conn driver.Conn, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if err := conn.Exec(t.Context(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestPrepareBatchRoundTrip proves the pinned driver inserts every column type of the platform's SQL subset
// into the test server and reads it back unchanged.
func TestPrepareBatchRoundTrip(t *testing.T) {
	conn, _, _ := chtest.New(t)
	ctx := t.Context()
	exec(t, conn, `CREATE TABLE facts (
		event_id UUID,
		tenant_id LowCardinality(String),
		kind Enum8('attendance' = 1, 'assessment' = 2),
		occurred_at DateTime('UTC'),
		occurred_ms UInt64,
		day Date,
		score Nullable(Float64),
		points Decimal(18, 4),
		delta Int32,
		tags Array(String)
	) ENGINE = MergeTree PARTITION BY toYYYYMM(day) ORDER BY (tenant_id, occurred_at, event_id)`)

	type row struct {
		id     uuid.UUID
		tenant string
		kind   string
		at     time.Time
		ms     uint64
		day    time.Time
		score  *float64
		points decimal.Decimal
		delta  int32
		tags   []string
	}
	score := 87.5
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	want := []row{
		{uuid.New(), "d1", "attendance", at, uint64(at.UnixMilli()) + 123, time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC), nil, decimal.RequireFromString("1.2500"), -3, []string{"a", "b"}},
		{uuid.New(), "d2", "assessment", at.Add(time.Hour), uint64(at.UnixMilli()) + 999, time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC), &score, decimal.RequireFromString("-7.0001"), 42, nil},
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO facts")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range want {
		if err := batch.Append(r.id, r.tenant, r.kind, r.at, r.ms, r.day, r.score, r.points, r.delta, r.tags); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	rows, err := conn.Query(ctx, "SELECT event_id, tenant_id, kind, occurred_at, occurred_ms, day, score, points, delta, tags FROM facts ORDER BY tenant_id")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := rows.Close(); err != nil {
			t.Error(err)
		}
	}()
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.tenant, &r.kind, &r.at, &r.ms, &r.day, &r.score, &r.points, &r.delta, &r.tags); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.id != w.id || g.tenant != w.tenant || g.kind != w.kind || !g.at.Equal(w.at) || g.ms != w.ms ||
			!g.day.Equal(w.day) || !g.points.Equal(w.points) || g.delta != w.delta || len(g.tags) != len(w.tags) {
			t.Errorf("row %d = %+v, want %+v", i, g, w)
		}
		if (g.score == nil) != (w.score == nil) || (g.score != nil && *g.score != *w.score) {
			t.Errorf("row %d score = %v, want %v", i, g.score, w.score)
		}
	}
}

// TestMaterializedViewRollup proves a SummingMergeTree rollup kept by MATERIALIZED VIEW ... TO counts every
// insert exactly once, whether rows come through PrepareBatch or INSERT ... SELECT.
func TestMaterializedViewRollup(t *testing.T) {
	conn, _, _ := chtest.New(t)
	ctx := t.Context()
	exec(t, conn,
		`CREATE TABLE events (tenant_id String, school_id String, occurred_at DateTime('UTC'), minutes UInt32)
		ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (tenant_id, occurred_at)`,
		`CREATE TABLE daily (tenant_id String, school_id String, day Date, events UInt64, minutes UInt64)
		ENGINE = SummingMergeTree PARTITION BY toYYYYMM(day) ORDER BY (tenant_id, school_id, day)`,
		`CREATE MATERIALIZED VIEW daily_mv TO daily AS
		SELECT tenant_id, school_id, toDate(occurred_at) AS day, count() AS events, sum(toUInt64(minutes)) AS minutes
		FROM events GROUP BY tenant_id, school_id, day`,
	)
	day1 := time.Date(2025, 9, 1, 8, 0, 0, 0, time.UTC)
	for range 3 { // three inserts make three parts, summed only at merge or read time
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO events (tenant_id, school_id, occurred_at, minutes)")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			school := "s1"
			if i%2 == 1 {
				school = "s2"
			}
			if err := batch.Append("d1", school, day1.Add(time.Duration(i)*time.Minute), uint32(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := batch.Send(); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, conn, `INSERT INTO events SELECT 'd1', 's1', toDateTime('2025-09-02 10:00:00', 'UTC'), toUInt32(number) FROM system.numbers LIMIT 4`)

	rows, err := conn.Query(ctx, `SELECT school_id, toString(day), sum(events), sum(minutes) FROM daily
		GROUP BY school_id, day ORDER BY school_id, day`)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := rows.Close(); err != nil {
			t.Error(err)
		}
	}()
	type total struct {
		school, day     string
		events, minutes uint64
	}
	var got []total
	for rows.Next() {
		var r total
		if err := rows.Scan(&r.school, &r.day, &r.events, &r.minutes); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []total{
		{"s1", "2025-09-01", 15, 3 * (0 + 2 + 4 + 6 + 8)},
		{"s1", "2025-09-02", 4, 0 + 1 + 2 + 3},
		{"s2", "2025-09-01", 15, 3 * (1 + 3 + 5 + 7 + 9)},
	}
	if len(got) != len(want) {
		t.Fatalf("rollup = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("rollup row %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestWaitMutations(t *testing.T) {
	conn, db, _ := chtest.New(t)
	ctx := t.Context()
	exec(t, conn, `CREATE TABLE students (tenant_id String, student_id String) ENGINE = MergeTree PARTITION BY tuple() ORDER BY (tenant_id, student_id)`)
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO students")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := batch.Append("d1", id); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	if err := chutil.WaitMutations(ctx, conn, db, "students"); err != nil {
		t.Fatalf("no mutation pending: %v", err)
	}

	exec(t, conn, "ALTER TABLE students DELETE WHERE student_id = 'b'")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chutil.WaitMutations(wctx, conn, db, "students"); err != nil {
		t.Fatal(err)
	}
	var pending, left uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = ? AND table = 'students' AND is_done = 0", db).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM students WHERE student_id = 'b'").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if pending != 0 || left != 0 {
		t.Fatalf("after WaitMutations: %d mutations pending, %d deleted rows left", pending, left)
	}
}

func TestMigrate(t *testing.T) {
	conn, db, _ := chtest.New(t)
	ctx := t.Context()
	fsys := fstest.MapFS{
		"0001_events.sql": {Data: []byte(`-- the fact table and its rollup
CREATE TABLE events (tenant_id String, n UInt64)
ENGINE = MergeTree PARTITION BY tuple() ORDER BY tenant_id;

CREATE TABLE totals (tenant_id String, n UInt64)
ENGINE = SummingMergeTree PARTITION BY tuple() ORDER BY tenant_id;
`)},
		"0002_rollup.sql": {Data: []byte("CREATE MATERIALIZED VIEW totals_mv TO totals AS SELECT tenant_id, n FROM events;\n")},
		"README.md":       {Data: []byte("not a migration")},
	}
	// Statements without IF NOT EXISTS fail when run twice, so a clean re-run proves nothing ran again.
	for range 2 {
		if err := chutil.Migrate(ctx, conn, db, fsys); err != nil {
			t.Fatal(err)
		}
	}
	assertVersions(t, conn, db, 1, 2)
	assertTables(t, conn, db, "events", "schema_migrations", "totals", "totals_mv")

	fsys["0003_more.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE more (x UInt8) ENGINE = MergeTree PARTITION BY tuple() ORDER BY x;")}
	if err := chutil.Migrate(ctx, conn, db, fsys); err != nil {
		t.Fatal(err)
	}
	assertVersions(t, conn, db, 1, 2, 3)

	// A file that failed after its ADD COLUMN runs again from the start: the column found there is no error.
	fsys["0004_column.sql"] = &fstest.MapFile{Data: []byte("ALTER TABLE more ADD COLUMN y String DEFAULT '';\nSELECT throwIf(1);\n")}
	if err := chutil.Migrate(ctx, conn, db, fsys); err == nil {
		t.Fatal("a failing migration returned no error")
	}
	fsys["0004_column.sql"] = &fstest.MapFile{Data: []byte("ALTER TABLE more ADD COLUMN y String DEFAULT '';\n")}
	if err := chutil.Migrate(ctx, conn, db, fsys); err != nil {
		t.Fatalf("running an ADD COLUMN again: %v", err)
	}
	assertVersions(t, conn, db, 1, 2, 3, 4)

	fsys["0005_broken.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE broken (x UInt8) ENGINE = NoSuchEngine;")}
	if err := chutil.Migrate(ctx, conn, db, fsys); err == nil {
		t.Fatal("a failing migration returned no error")
	}
	assertVersions(t, conn, db, 1, 2, 3, 4)
	delete(fsys, "0005_broken.sql")

	fsys["0001_events.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE events (edited UInt8) ENGINE = Memory;")}
	if err := chutil.Migrate(ctx, conn, db, fsys); !errors.Is(err, chutil.ErrChecksumMismatch) {
		t.Fatalf("edited applied migration: err = %v, want ErrChecksumMismatch", err)
	}
}

func TestMigrateRefusesAnotherDatabase(t *testing.T) {
	conn, _, _ := chtest.New(t)
	fsys := fstest.MapFS{"0001_x.sql": {Data: []byte("SELECT 1;")}}
	if err := chutil.Migrate(t.Context(), conn, "somewhere_else", fsys); !errors.Is(err, chutil.ErrWrongDatabase) {
		t.Fatalf("err = %v, want ErrWrongDatabase", err)
	}
}

func assertVersions(t *testing.T, conn driver.Conn, db string, want ...uint32) {
	t.Helper()
	rows, err := conn.Query(t.Context(), "SELECT version FROM "+chutil.QuoteIdent(db)+".schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := rows.Close(); err != nil {
			t.Error(err)
		}
	}()
	var got []uint32
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("recorded versions %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("recorded versions %v, want %v", got, want)
		}
	}
}

func assertTables(t *testing.T, conn driver.Conn, db string, want ...string) {
	t.Helper()
	var tables []struct {
		Name string `ch:"name"`
	}
	if err := conn.Select(t.Context(), &tables, "SELECT name FROM system.tables WHERE database = ? ORDER BY name", db); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tb := range tables {
		got = append(got, tb.Name)
	}
	if len(got) != len(want) {
		t.Fatalf("tables %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("tables %v, want %v", got, want)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		want    []uint32
		wantErr bool
	}{
		{"ordered by version", fstest.MapFS{"0010_b.sql": {Data: []byte("SELECT 2;")}, "0002_a.sql": {Data: []byte("SELECT 1;")}}, []uint32{2, 10}, false},
		{"other files ignored", fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1;")}, "notes.txt": {}}, []uint32{1}, false},
		{"bad name", fstest.MapFS{"create.sql": {Data: []byte("SELECT 1;")}}, nil, true},
		{"short version", fstest.MapFS{"01_a.sql": {Data: []byte("SELECT 1;")}}, nil, true},
		{"duplicate version", fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1;")}, "0001_b.sql": {Data: []byte("SELECT 1;")}}, nil, true},
		{"empty file", fstest.MapFS{"0001_a.sql": {Data: []byte("-- nothing\n")}}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := chutil.LoadMigrations(tt.fsys)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(ms) != len(tt.want) {
				t.Fatalf("got %d migrations, want %v", len(ms), tt.want)
			}
			for i, m := range ms {
				if m.Version != tt.want[i] {
					t.Errorf("migration %d version %d, want %d", i, m.Version, tt.want[i])
				}
			}
		})
	}
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"one", "SELECT 1;", []string{"SELECT 1"}},
		{"no trailing semicolon", "SELECT 1", []string{"SELECT 1"}},
		{"multi-line and comments", "-- c\nCREATE TABLE a\n(x UInt8)\nENGINE = Memory;\n\n-- d\nSELECT 2 ;  \n", []string{"CREATE TABLE a\n(x UInt8)\nENGINE = Memory", "SELECT 2"}},
		{"semicolon inside a line is kept", "SELECT ';' AS s, 1;", []string{"SELECT ';' AS s, 1"}},
		{"crlf", "SELECT 1;\r\nSELECT 2;\r\n", []string{"SELECT 1", "SELECT 2"}},
		{"blank", "\n  \n-- only comments\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := chutil.SplitStatements(tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("SplitStatements(%q) = %q, want %q", tt.in, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("statement %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestQuoteIdent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"events", "`events`"},
		{"we`ird", "`we\\`ird`"},
		{`back\slash`, "`back\\\\slash`"},
	}
	for _, tt := range tests {
		if got := chutil.QuoteIdent(tt.in); got != tt.want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestQuoteIdentIsSafeOnTheServer(t *testing.T) {
	conn, _, _ := chtest.New(t)
	name := "we`ird; table"
	exec(t, conn, "CREATE TABLE "+chutil.QuoteIdent(name)+" (x UInt8) ENGINE = Memory")
	var n uint64
	if err := conn.QueryRow(t.Context(), "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?", name).Scan(&n); err != nil || n != 1 {
		t.Fatalf("table %q found %d times: %v", name, n, err)
	}
}

func TestOpenFailsWithoutServer(t *testing.T) {
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if conn, err := chutil.Open(ctx, chutil.Options{Addr: addr, DialTimeout: time.Second}); err == nil {
		_ = conn.Close()
		t.Fatal("Open succeeded without a server")
	}
	if _, err := chutil.Open(ctx, chutil.Options{}); err == nil {
		t.Fatal("Open succeeded without an address")
	}
}
