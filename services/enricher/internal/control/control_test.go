package control_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/enricher/internal/control"
	"github.com/edtech-analytics/platform/services/enricher/internal/identity"
	"github.com/edtech-analytics/platform/services/enricher/internal/roster"
	"github.com/twmb/franz-go/pkg/kgo"
)

func ptr[T any](v T) *T { return &v }

// TestControlCommandsAreAppliedOnceAndDurably feeds erase commands of every shape (and other commands,
// and garbage) through the control topic, then checks the registry, the district's identities, that a
// restarted consumer resumes after what it applied, and that a fresh Load sees the same erasures.
func TestControlCommandsAreAppliedOnceAndDurably(t *testing.T) {
	ctx := t.Context()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store := tenants.New(fleet.New(pool, os.Getenv))
	d1, err := store.Create(ctx, "d1", "D1")
	if err != nil {
		t.Fatal(err)
	}
	ids := identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100)
	byID, err := ids.Resolve(ctx, d1, "sis", "S1")
	if err != nil {
		t.Fatal(err)
	}
	kcfg, codec, produce, cl := controlTopic(t)
	cmd := func(n int, typ, tenant string) records.ControlCommand {
		return records.ControlCommand{CommandID: "20000000-0000-4000-8000-00000000000" + string(rune('0'+n)), Type: typ,
			TenantID: tenant, IssuedAt: time.Now(), IssuedBy: "test"}
	}
	bySIS := cmd(1, records.CommandEraseStudent, "d1")
	bySIS.SourceID, bySIS.SISID = ptr("sis"), ptr("S2") // never seen: reserved and erased
	byInternal := cmd(2, records.CommandEraseStudent, "d1")
	byInternal.StudentInternalID = &byID.InternalID
	unknown := cmd(3, records.CommandEraseStudent, "nowhere")
	unknown.SourceID, unknown.SISID = ptr("sis"), ptr("X")
	produce(bySIS, byInternal, unknown, cmd(4, records.CommandEraseDistrict, "d9"), cmd(5, records.CommandPolicyUpdated, "d1"))
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: kcfg.Topics().Control, Key: []byte("d1"), Value: []byte("garbage")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// run starts a consumer and returns once it has caught up, with what it was told besides erasures.
	run := func(reg *control.Registry) (stop func(), others func() []string) {
		var mu sync.Mutex
		var seen []string
		c := &control.Consumer{Pool: pool, Topic: kcfg.Topics().Control, Reader: reader(t, kcfg), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Codec: codec, Registry: reg, Tenants: store, Identities: ids, Context: roster.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100),
			OnCommand: func(c records.ControlCommand) { mu.Lock(); seen = append(seen, c.Type); mu.Unlock() }}
		return start(t, c), func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), seen...)
		}
	}

	reg, err := control.Load(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	stop, others := run(reg)
	s2, err := identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100).Resolve(ctx, d1, "sis", "S2")
	if err != nil {
		t.Fatal(err)
	}
	check := func(reg *control.Registry) {
		t.Helper()
		if !reg.Student("d1", byID.InternalID) || !reg.Student("d1", s2.InternalID) || !reg.District("d9") ||
			!reg.Student("d9", "anyone") || reg.District("d1") || reg.Student("nowhere", "") {
			t.Fatal("registry does not hold exactly the erasures")
		}
	}
	check(reg) // in force as soon as the consumer reported it caught up
	if got := others(); len(got) != 1 || got[0] != records.CommandPolicyUpdated {
		t.Fatalf("other commands = %v", got)
	}
	stop()

	// A restart resumes after the applied commands: nothing is applied twice.
	produce(cmd(6, records.CommandTenantDeleted, "d1"))
	stop, others = run(reg)
	if got := others(); len(got) != 1 || got[0] != records.CommandTenantDeleted {
		t.Fatalf("after restart, other commands = %v", got)
	}
	stop()
	reloaded, err := control.Load(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	check(reloaded)
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM control.erasures").Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d erasures recorded, want 3 (%v)", n, err)
	}
}

// TestEraseStudentOfDistrictOnAnotherInstance places a district on a second PostgreSQL instance: the
// student's identity is created there, the erasure hashes its SIS id and marks it erased there, and the
// registry row lands in the control schema.
func TestEraseStudentOfDistrictOnAnotherInstance(t *testing.T) {
	ctx := t.Context()
	controlDB, _ := pgtest.New(t)
	if err := tenancy.Migrate(ctx, controlDB); err != nil {
		t.Fatal(err)
	}
	east, eastURL := pgtest.New(t)
	instances := fleet.New(controlDB, func(k string) string { return map[string]string{"EAST_URL": eastURL}[k] })
	t.Cleanup(instances.Close)
	if _, err := instances.AddInstance(ctx, "east", "EAST_URL", false); err != nil {
		t.Fatal(err)
	}
	store := tenants.New(instances)
	d, err := store.CreateOn(ctx, "d2", "D2", "east")
	if err != nil {
		t.Fatal(err)
	}
	districts := fleet.NewDistrictPools(instances)
	ids := identity.New(districts, 100)
	student, err := ids.Resolve(ctx, d, "sis", "S1")
	if err != nil {
		t.Fatalf("resolving a student of a district on east: %v", err)
	}
	var onEast int
	if err := east.QueryRow(ctx, "SELECT count(*) FROM district_d2.student_identities WHERE sis_id = 'S1'").Scan(&onEast); err != nil || onEast != 1 {
		t.Fatalf("identity rows on east = %d, %v; want 1", onEast, err)
	}

	kcfg, codec, produce, _ := controlTopic(t)
	produce(records.ControlCommand{CommandID: "30000000-0000-4000-8000-000000000001", Type: records.CommandEraseStudent,
		TenantID: "d2", StudentInternalID: &student.InternalID, IssuedAt: time.Now(), IssuedBy: "test"})
	reg, err := control.Load(ctx, controlDB)
	if err != nil {
		t.Fatal(err)
	}
	c := &control.Consumer{Pool: controlDB, Pools: districts, Topic: kcfg.Topics().Control, Reader: reader(t, kcfg), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Codec: codec, Registry: reg, Tenants: store, Identities: ids, Context: roster.New(districts, 100)}
	start(t, c)()
	if !reg.Student("d2", student.InternalID) {
		t.Error("the registry does not hold the erasure")
	}
	var clear, erased int
	if err := east.QueryRow(ctx, `SELECT count(*) FILTER (WHERE sis_id = 'S1'), count(*) FILTER (WHERE sis_id LIKE 'erased:%')
		FROM district_d2.student_identities`).Scan(&clear, &erased); err != nil {
		t.Fatal(err)
	}
	var marked bool
	if err := east.QueryRow(ctx, "SELECT erased_at IS NOT NULL FROM district_d2.students WHERE internal_id = $1", student.InternalID).Scan(&marked); err != nil {
		t.Fatal(err)
	}
	if clear != 0 || erased != 1 || !marked {
		t.Errorf("on east: %d clear SIS ids, %d hashed, marked erased %v; want 0, 1, true", clear, erased, marked)
	}
	var recorded int
	if err := controlDB.QueryRow(ctx, "SELECT count(*) FROM control.erasures WHERE tenant_id = 'd2'").Scan(&recorded); err != nil || recorded != 1 {
		t.Errorf("erasures recorded in control = %d, %v; want 1", recorded, err)
	}
	again, err := identity.New(districts, 100).Resolve(ctx, d, "sis", "S1") // a cold cache: found by its hash
	if err != nil || again.InternalID != student.InternalID {
		t.Errorf("S1 after erasure resolves to %v, %v; want the same internal id", again.InternalID, err)
	}
}

// controlTopic starts an in-process Kafka with the platform's topics and returns its config, a codec, a
// function producing commands to the control topic (keyed by tenant) and the producing client.
func controlTopic(t *testing.T) (kafkax.Config, *records.Codec, func(...records.ControlCommand), *kafkax.Client) {
	t.Helper()
	_, kcfg := kafkatest.New(t)
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := kafkax.EnsureTopics(t.Context(), cl.Client, 4, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	produce := func(cmds ...records.ControlCommand) {
		for _, cmd := range cmds {
			b, err := codec.Encode(&cmd)
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: kcfg.Topics().Control, Key: []byte(cmd.TenantID), Value: b}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return kcfg, codec, produce, cl
}

// start runs c until it has caught up with the control topic and returns what stops it.
func start(t *testing.T, c *control.Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	caught, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- c.Run(ctx, func() { close(caught) }) }()
	select {
	case <-caught:
	case err := <-done:
		cancel()
		t.Fatalf("consumer stopped: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("consumer never caught up")
	}
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	}
}

// reader is a control topic reader for one consumer, closed when the test ends.
func reader(t *testing.T, kcfg kafkax.Config) *kgo.Client {
	t.Helper()
	cl, err := kafkax.NewReader(kcfg, kafkax.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl.Client
}
