package api

// Product analytics: funnels, retention and activation, read from the events fact table (one row per
// event, sorted by tenant_id, type, occurred_at), scoped like the summaries, with the district's days
// in its own time zone. The definitions are in the service's README and ADR 0024.

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/ttlcache"
	"github.com/edtech-analytics/platform/services/query/internal/auth"
	"github.com/google/uuid"
)

// TimeZones gives a district's time zone, an IANA name ("" is UTC), which sets the days of its
// analytics (timezones.Store).
type TimeZones interface {
	TimeZone(ctx context.Context, tenantID string) (string, error)
}

// WithTimeZones makes the analytics endpoints cut days and weeks in each district's time zone, read from
// tz and cached for ttl (the delay of a change). Without it every district's days are UTC days.
func WithTimeZones(tz TimeZones, ttl time.Duration) Option {
	return func(a *API) {
		a.zones = tz
		a.zoneCache = ttlcache.New[string, *time.Location](maxCachedZones, ttl)
	}
}

const maxCachedZones = 100_000

// location returns the district's time zone.
func (a *API) location(ctx context.Context, tenantID string) (*time.Location, error) {
	if a.zones == nil {
		return time.UTC, nil
	}
	return a.zoneCache.Get(tenantID, func() (*time.Location, error) {
		name, err := a.zones.TimeZone(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		if name == "" {
			return time.UTC, nil
		}
		loc, err := time.LoadLocation(name)
		if err != nil {
			return nil, fmt.Errorf("time zone of %s: %w", tenantID, err)
		}
		return loc, nil
	})
}

// Bounds of the analytics parameters.
const (
	minFunnelSteps, maxFunnelSteps = 2, 8
	maxEventNames                  = 16
	maxRetentionWeeks              = 26 // retention() takes at most 32 conditions
	maxActivationDays              = 366
	maxFunnelWindow                = 366 * 24 * time.Hour
	defaultFunnelWindow            = 7 * 24 * time.Hour
	defaultActivationDays          = 7
)

// EventName is one name of a funnel step or of an event set (events=): a platform event type, an alias
// (login, logout, submission) or a product's custom event name.
type EventName struct {
	Name string `json:"name"` // as requested
	Kind string `json:"kind"` // type, session or custom
	typ  string // the events.type it reads
	cond string // the SQL condition on an events row, literals only
}

// customName is the grammar of a custom event's name (ADR 0018).
var customName = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// learningTypes are the event types that are facts (the events table holds no others).
var learningTypes = []string{records.TypeAttendance, records.TypeAssessmentResult, records.TypeAssignmentSubmission,
	records.TypeSession, records.TypeContentView, records.TypeCustom, records.TypeGeneric}

// parseStep reads one step name, or says what is wrong with it.
func parseStep(name string) (EventName, string) {
	s := EventName{Name: name}
	switch {
	case name == records.SessionLogin || name == records.SessionLogout:
		s.Kind, s.typ = "session", records.TypeSession
		s.cond = "(type = 'session' AND session_action = " + quote(name) + ")"
	case name == "submission":
		s.Kind, s.typ = "type", records.TypeAssignmentSubmission
	case slices.Contains(learningTypes, name):
		s.Kind, s.typ = "type", name
	default:
		custom := strings.TrimPrefix(name, "custom:")
		if !customName.MatchString(custom) {
			return s, fmt.Sprintf("%.140q is neither an event type, login, logout, submission nor a custom event name (1-128 of A-Z, a-z, 0-9, '_', '.', ':', '-')", name)
		}
		s.Kind, s.typ = "custom", records.TypeCustom
		s.cond = "(type = 'custom' AND custom_name = " + quote(custom) + ")"
	}
	if s.cond == "" {
		s.cond = "(type = " + quote(s.typ) + ")"
	}
	return s, ""
}

// parseSteps reads a comma-separated list of step names of n to m distinct names.
func parseSteps(param, value string, n, m int) ([]EventName, string) {
	names := strings.Split(value, ",")
	if value == "" || len(names) < n || len(names) > m {
		return nil, fmt.Sprintf("%s: must list %d to %d event names, separated by commas", param, n, m)
	}
	var out []EventName
	for i, name := range names {
		if slices.Contains(names[:i], name) {
			return nil, fmt.Sprintf("%s: %.140q is listed twice", param, name)
		}
		s, msg := parseStep(name)
		if msg != "" {
			return nil, param + ": " + msg
		}
		out = append(out, s)
	}
	return out, ""
}

// quote is a ClickHouse string literal of s.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// typesOf is the SQL list of the event types steps read, for the sort key.
func typesOf(steps []EventName) string {
	var types []string
	for _, s := range steps {
		if !slices.Contains(types, s.typ) {
			types = append(types, s.typ)
		}
	}
	slices.Sort(types)
	q := make([]string, len(types))
	for i, t := range types {
		q[i] = quote(t)
	}
	return "(" + strings.Join(q, ", ") + ")"
}

// anyOf is the SQL condition an events row matching one of steps meets.
func anyOf(steps []EventName) string {
	conds := make([]string, len(steps))
	for i, s := range steps {
		conds[i] = s.cond
	}
	return "(" + strings.Join(conds, " OR ") + ")"
}

// defaultEvents returns the event set used when events= is absent: every learning event type but except.
func defaultEvents(except ...string) []EventName {
	var out []EventName
	for _, t := range learningTypes {
		if !slices.Contains(except, t) {
			s, _ := parseStep(t)
			out = append(out, s)
		}
	}
	return out
}

// parseEvents reads the events= parameter, or returns def when it is absent.
func parseEvents(r *http.Request, def []EventName) ([]EventName, string) {
	if !r.URL.Query().Has("events") {
		return def, ""
	}
	return parseSteps("events", r.URL.Query().Get("events"), 1, maxEventNames)
}

// parseWindow reads a window: a whole number of seconds, minutes, hours or days (90s, 30m, 12h, 7d).
func parseWindow(value string) (time.Duration, string) {
	const msg = "window: must be a whole number of s, m, h or d (such as 7d or 36h), from 1s to 366d"
	if len(value) < 2 {
		return 0, msg
	}
	units := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}
	unit, ok := units[value[len(value)-1]]
	n, err := strconv.ParseUint(value[:len(value)-1], 10, 32)
	if !ok || err != nil || n == 0 || time.Duration(n)*unit > maxFunnelWindow {
		return 0, msg
	}
	return time.Duration(n) * unit, ""
}

// intParam reads an integer parameter in [lo, hi], def when absent.
func intParam(r *http.Request, name string, def, lo, hi int) (int, string) {
	if !r.URL.Query().Has(name) {
		return def, ""
	}
	n, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil || n < lo || n > hi {
		return 0, fmt.Sprintf("%s: must be a whole number from %d to %d", name, lo, hi)
	}
	return n, ""
}

// analyticsScope is what an analytics request reads: the district, one school or one class.
type analyticsScope struct {
	Level string `json:"level"` // district, school or class
	ID    string `json:"id,omitempty"`
	where string // extra SQL condition on events rows (literals), "" for the district
}

// scope reads school_id or class_id and checks the principal may read it, with the summaries' rules:
// the district is for district admins; a school for district admins and its school admins; a class for
// district admins, school admins of its school (only events of their schools are read) and its
// teachers. On failure it has answered.
func (a *API) scope(w http.ResponseWriter, r *http.Request, p auth.Principal) (analyticsScope, bool) {
	q := r.URL.Query()
	school, class := q.Get("school_id"), q.Get("class_id")
	for _, param := range []string{"school_id", "class_id"} {
		if !q.Has(param) {
			continue
		}
		msg := records.CheckText(q.Get(param), records.MaxIDBytes, records.Line)
		if q.Get(param) == "" {
			msg = "must not be empty"
		}
		if msg != "" {
			problem(w, http.StatusBadRequest, "invalid-parameter", param+": "+msg)
			return analyticsScope{}, false
		}
	}
	switch {
	case q.Has("school_id") && q.Has("class_id"):
		problem(w, http.StatusBadRequest, "invalid-parameter", "class_id: give school_id or class_id, not both")
		return analyticsScope{}, false
	case q.Has("school_id"):
		if !a.schoolAllowed(w, p, school) {
			return analyticsScope{}, false
		}
		return analyticsScope{Level: "school", ID: school, where: "school_id = " + quote(school)}, true
	case q.Has("class_id"):
		parents, ok := a.classAllowed(w, r, p, class)
		if !ok {
			return analyticsScope{}, false
		}
		where := "class_id = " + quote(class)
		if len(parents) > 0 {
			qs := make([]string, len(parents))
			for i, s := range parents {
				qs[i] = quote(s)
			}
			where += " AND school_id IN (" + strings.Join(qs, ", ") + ")"
		}
		return analyticsScope{Level: "class", ID: class, where: where}, true
	}
	if p.Role != credentials.RoleDistrictAdmin {
		forbidden(w, p, "the whole district's analytics (give school_id or class_id)")
		return analyticsScope{}, false
	}
	return analyticsScope{Level: "district"}, true
}

// analyticsRequest is an authorized analytics request: the range in the district's days.
type analyticsRequest struct {
	request
	scope analyticsScope
	loc   *time.Location
}

// beginAnalytics authenticates, parses from, to and the scope, and reads the district's time zone. On
// failure it has answered.
func (a *API) beginAnalytics(w http.ResponseWriter, r *http.Request) (analyticsRequest, bool) {
	req, ok := a.begin(w, r)
	if !ok {
		return analyticsRequest{}, false
	}
	sc, ok := a.scope(w, r, req.p)
	if !ok {
		return analyticsRequest{}, false
	}
	loc, err := a.location(r.Context(), req.p.TenantID)
	if err != nil {
		a.unavailable(w, r, req.p, "reading the district's time zone", err)
		return analyticsRequest{}, false
	}
	return analyticsRequest{request: req, scope: sc, loc: loc}, true
}

// start is the instant the district's day d (a date) begins, as seconds since the epoch.
func (q analyticsRequest) start(d time.Time) int64 {
	return time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, q.loc).Unix()
}

// eventsWhere is the filter of every analytics query: the district, students' events of types (an SQL
// list) meeting cond, in [from, until) (seconds since the epoch), in the scope.
func (q analyticsRequest) eventsWhere(types, cond string, from, until int64) string {
	w := fmt.Sprintf("tenant_id = %s AND type IN %s AND occurred_at >= toDateTime(%d) AND occurred_at < toDateTime(%d) AND role = 'student' AND %s",
		quote(q.p.TenantID), types, from, until, cond)
	if q.scope.where != "" {
		w += " AND " + q.scope.where
	}
	return w
}

// analyticsHeader is common to the answers of the analytics endpoints.
type analyticsHeader struct {
	TenantID string `json:"tenant_id"`
	analyticsScope
	From     string `json:"from"`
	To       string `json:"to"`
	TimeZone string `json:"time_zone"`
}

func (q analyticsRequest) header() analyticsHeader {
	return analyticsHeader{TenantID: q.p.TenantID, analyticsScope: q.scope, From: q.from.Format(time.DateOnly),
		To: q.to.Format(time.DateOnly), TimeZone: q.loc.String()}
}

// Funnel is the answer of GET /v1/funnels.
type Funnel struct {
	analyticsHeader
	WindowSeconds int64        `json:"window_seconds"`
	Steps         []FunnelStep `json:"steps"`
}

// FunnelStep is how many students reached a step (and every step before it, in order, within the
// window of their first step), and the share of those of the previous and of the first step.
type FunnelStep struct {
	EventName
	Students     uint64   `json:"students"`
	FromPrevious *float64 `json:"conversion_from_previous"`
	FromFirst    *float64 `json:"conversion_from_first"`
}

// GET /v1/funnels?steps=a,b,c&window=7d&from=&to=[&school_id=|&class_id=]
func (a *API) funnels(w http.ResponseWriter, r *http.Request) {
	q, ok := a.beginAnalytics(w, r)
	if !ok {
		return
	}
	steps, msg := parseSteps("steps", r.URL.Query().Get("steps"), minFunnelSteps, maxFunnelSteps)
	window := defaultFunnelWindow
	if msg == "" && r.URL.Query().Has("window") {
		window, msg = parseWindow(r.URL.Query().Get("window"))
	}
	if msg != "" {
		problem(w, http.StatusBadRequest, "invalid-parameter", msg)
		return
	}
	conds := make([]string, len(steps))
	for i, s := range steps {
		conds[i] = s.cond
	}
	query := fmt.Sprintf(`SELECT level, toUInt64(count()) FROM (
		SELECT windowFunnel(%d)(occurred_at, %s) AS level FROM events
		WHERE %s
		GROUP BY student_id
	) WHERE level > 0 GROUP BY level`, int64(window/time.Second), strings.Join(conds, ", "),
		q.eventsWhere(typesOf(steps), anyOf(steps), q.start(q.from), q.start(q.to.AddDate(0, 0, 1))))
	rows, err := a.ch.Query(r.Context(), query)
	if err != nil {
		a.unavailable(w, r, q.p, "querying a funnel", err)
		return
	}
	defer func() { _ = rows.Close() }()     // read-only; after a full iteration Close only repeats rows.Err
	reached := make([]uint64, len(steps)+1) // reached[k]: students whose furthest step is k
	for rows.Next() {
		var level uint8
		var n uint64
		if err := rows.Scan(&level, &n); err != nil {
			a.unavailable(w, r, q.p, "reading a funnel", err)
			return
		}
		if int(level) < len(reached) {
			reached[level] += n
		}
	}
	if err := rows.Err(); err != nil {
		a.unavailable(w, r, q.p, "reading a funnel", err)
		return
	}
	out := Funnel{analyticsHeader: q.header(), WindowSeconds: int64(window / time.Second), Steps: make([]FunnelStep, len(steps))}
	var atLeast uint64
	for k := len(steps); k >= 1; k-- {
		atLeast += reached[k]
		out.Steps[k-1] = FunnelStep{EventName: steps[k-1], Students: atLeast}
	}
	for k := range out.Steps {
		first := float64(out.Steps[0].Students)
		out.Steps[k].FromFirst = ratio(float64(out.Steps[k].Students), first)
		if k > 0 {
			out.Steps[k].FromPrevious = ratio(float64(out.Steps[k].Students), float64(out.Steps[k-1].Students))
		}
	}
	writeJSON(w, out)
}

// Retention is the answer of GET /v1/retention.
type Retention struct {
	analyticsHeader
	Weeks   int         `json:"weeks"`
	Events  []EventName `json:"events"`
	Cohorts []Cohort    `json:"cohorts"`
}

// Cohort is the students active in one week (Monday to Sunday in the district's time zone) and how many
// of them were active again 1..n weeks later.
type Cohort struct {
	Week     string          `json:"week"` // its Monday
	Students uint64          `json:"students"`
	Retained []RetentionWeek `json:"retained"`
}

// RetentionWeek is the students of a cohort active again Offset weeks after its week.
type RetentionWeek struct {
	Offset   int      `json:"offset"`
	Week     string   `json:"week"`
	Students uint64   `json:"students"`
	Share    *float64 `json:"share"`
}

// monday is the Monday on or before d.
func monday(d time.Time) time.Time {
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

// GET /v1/retention?from=&to=&weeks=n[&events=][&school_id=|&class_id=]
func (a *API) retention(w http.ResponseWriter, r *http.Request) {
	q, ok := a.beginAnalytics(w, r)
	if !ok {
		return
	}
	weeks, msg := intParam(r, "weeks", 4, 1, maxRetentionWeeks)
	var events []EventName
	if msg == "" {
		events, msg = parseEvents(r, defaultEvents(records.TypeAttendance))
	}
	if msg != "" {
		problem(w, http.StatusBadRequest, "invalid-parameter", msg)
		return
	}
	first, last := monday(q.from), monday(q.to)
	conds := make([]string, weeks+1)
	for k := range conds {
		conds[k] = fmt.Sprintf("week = cohort + %d", 7*k)
	}
	zone := quote(q.loc.String())
	query := fmt.Sprintf(`SELECT toString(cohort), sumForEach(r) FROM (
		SELECT retention(%s) AS r, cohort FROM (
			SELECT student_id, week,
				arrayFilter(c -> c >= toDate('%s') AND c <= toDate('%s'), arrayMap(k -> week - 7 * k, range(%d))) AS cohorts
			FROM (SELECT student_id, toMonday(occurred_at, %s) AS week FROM events WHERE %s GROUP BY student_id, week)
		) ARRAY JOIN cohorts AS cohort
		GROUP BY student_id, cohort
	) GROUP BY cohort`, strings.Join(conds, ", "), first.Format(time.DateOnly), last.Format(time.DateOnly), weeks+1, zone,
		q.eventsWhere(typesOf(events), anyOf(events), q.start(first), q.start(last.AddDate(0, 0, 7*(weeks+1)))))
	rows, err := a.ch.Query(r.Context(), query)
	if err != nil {
		a.unavailable(w, r, q.p, "querying retention", err)
		return
	}
	defer func() { _ = rows.Close() }() // read-only; after a full iteration Close only repeats rows.Err
	counts := map[string][]uint64{}
	for rows.Next() {
		var week string
		var c []uint64
		if err := rows.Scan(&week, &c); err != nil {
			a.unavailable(w, r, q.p, "reading retention", err)
			return
		}
		counts[week] = c
	}
	if err := rows.Err(); err != nil {
		a.unavailable(w, r, q.p, "reading retention", err)
		return
	}
	out := Retention{analyticsHeader: q.header(), Weeks: weeks, Events: events, Cohorts: []Cohort{}}
	for wk := first; !wk.After(last); wk = wk.AddDate(0, 0, 7) {
		c := counts[wk.Format(time.DateOnly)]
		if len(c) != weeks+1 {
			c = make([]uint64, weeks+1)
		}
		cohort := Cohort{Week: wk.Format(time.DateOnly), Students: c[0], Retained: make([]RetentionWeek, weeks)}
		for k := 1; k <= weeks; k++ {
			cohort.Retained[k-1] = RetentionWeek{Offset: k, Week: wk.AddDate(0, 0, 7*k).Format(time.DateOnly), Students: c[k],
				Share: ratio(float64(c[k]), float64(c[0]))}
		}
		out.Cohorts = append(out.Cohorts, cohort)
	}
	writeJSON(w, out)
}

// Activation is the answer of GET /v1/activation.
type Activation struct {
	analyticsHeader
	Days      int         `json:"days"`
	Events    []EventName `json:"events"`
	Enrolled  uint64      `json:"enrolled"`
	Activated uint64      `json:"activated"`
	Share     *float64    `json:"share"`
	// ByDay[i] counts the activated students whose first meaningful event on or after their enrollment
	// day fell i days after it.
	ByDay []uint64 `json:"by_day"`
}

// GET /v1/activation?days=N&from=&to=[&events=][&school_id=|&class_id=]
func (a *API) activation(w http.ResponseWriter, r *http.Request) {
	q, ok := a.beginAnalytics(w, r)
	if !ok {
		return
	}
	days, msg := intParam(r, "days", defaultActivationDays, 1, maxActivationDays)
	var events []EventName
	if msg == "" {
		events, msg = parseEvents(r, defaultEvents(records.TypeAttendance, records.TypeSession))
	}
	if msg != "" {
		problem(w, http.StatusBadRequest, "invalid-parameter", msg)
		return
	}
	var es auth.EnrollmentScope
	switch q.scope.Level {
	case "school":
		es.School = q.scope.ID
	case "class":
		es.Class = q.scope.ID
	}
	enrolled, err := a.auth.StudentEnrollments(r.Context(), q.p.TenantID, es, q.from, q.to)
	if err != nil {
		a.unavailable(w, r, q.p, "reading the roster", err)
		return
	}
	out := Activation{analyticsHeader: q.header(), Days: days, Events: events, Enrolled: uint64(len(enrolled)), ByDay: make([]uint64, days)}
	if len(enrolled) > 0 {
		if err := a.activated(r.Context(), q, events, days, enrolled, out.ByDay); err != nil {
			a.unavailable(w, r, q.p, "querying activation", err)
			return
		}
	}
	for _, n := range out.ByDay {
		out.Activated += n
	}
	out.Share = ratio(float64(out.Activated), float64(out.Enrolled))
	writeJSON(w, out)
}

// activated counts into byDay the enrolled students by the day, after their enrollment day, of their first
// meaningful event on or after it. The cohort goes to ClickHouse as an external table. Students' events
// count wherever they happened in the district: the cohort, not the events, is in the scope.
func (a *API) activated(ctx context.Context, q analyticsRequest, events []EventName, days int, enrolled []auth.Enrollee, byDay []uint64) error {
	cohort, err := ext.NewTable("cohort", ext.Column("id", "String"), ext.Column("enrolled", "Date"))
	if err != nil {
		return err
	}
	for _, e := range enrolled {
		id, err := uuid.Parse(e.StudentID)
		if err != nil {
			return fmt.Errorf("roster internal id %q: %w", e.StudentID, err)
		}
		if err := cohort.Append(id.String(), e.Enrolled); err != nil {
			return err
		}
	}
	// Events are scoped by the cohort, not by their school or class.
	unscoped := q
	unscoped.scope.where = ""
	query := fmt.Sprintf(`SELECT toUInt32(offset), toUInt64(count()) FROM (
		SELECT id, min(d - enrolled) AS offset FROM (
			SELECT toString(student_id) AS id, toDate(occurred_at, %s) AS d FROM events
			WHERE %s AND toString(student_id) IN (SELECT id FROM cohort)
			GROUP BY id, d
		) ANY INNER JOIN (SELECT id, enrolled FROM cohort) USING id
		WHERE d >= enrolled
		GROUP BY id
	) WHERE offset < %d GROUP BY offset`, quote(q.loc.String()),
		unscoped.eventsWhere(typesOf(events), anyOf(events), q.start(q.from), q.start(q.to.AddDate(0, 0, days))), days)
	rows, err := a.ch.Query(clickhouse.Context(ctx, clickhouse.WithExternalTable(cohort)), query)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }() // read-only; after a full iteration Close only repeats rows.Err
	for rows.Next() {
		var offset uint32
		var n uint64
		if err := rows.Scan(&offset, &n); err != nil {
			return err
		}
		if int(offset) < len(byDay) {
			byDay[offset] = n
		}
	}
	return rows.Err()
}
