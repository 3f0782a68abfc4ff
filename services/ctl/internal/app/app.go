// Package app implements ctl's commands.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrUsage matches (errors.Is) every error caused by a bad command line.
var ErrUsage = errors.New("bad command line")

// usageError is a command-line error; its message is the cause alone, without ErrUsage's text.
type usageError struct{ err error }

func (u usageError) Error() string        { return u.err.Error() }
func (u usageError) Unwrap() error        { return u.err }
func (u usageError) Is(target error) bool { return target == ErrUsage }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// EnvDatabaseURL names the environment variable read when --database-url is not given.
const EnvDatabaseURL = "DATABASE_URL"

// MigrateVars returns what `ctl migrate` reads from its environment: the control database's URL (connect),
// a secret. The URLs of the other instances are read under the names control.instances gives them.
func MigrateVars() []conf.Var {
	return []conf.Var{{Env: EnvDatabaseURL, Flag: "database-url", Secret: true}}
}

// Env is what a command talks to: its streams and the environment. Stdin may be nil (no input).
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// command is one leaf of the command tree.
type command struct {
	name     string // words typed after ctl, e.g. "tenant create"
	synopsis string // its flags, for the usage text
	summary  string
	run      func(ctx context.Context, e Env, args []string) error
}

func commands() []command {
	return []command{
		{"migrate", "[--parallel N]", "migrate the control schema, then every district schema on every instance", runMigrate},
		{"tenant create", "--id ID --name NAME [--instance NAME]", "register a district and create its schema", runTenantCreate},
		{"tenant list", "", "list districts and their instances", runTenantList},
		{"tenant move", moveSynopsis, "move a district to another PostgreSQL instance while ingestion goes on", runTenantMove},
		{"erase tenant", "--tenant ID --confirm ID [--reason TEXT]",
			"erase a district from every store (credentials, keys, PostgreSQL, ClickHouse), as a resumable, verified job", runEraseTenant},
		{"erase student", "--tenant ID --student SIS_ID [--source SRC] [--reason TEXT]",
			"erase a student from every store (key, enricher, PostgreSQL, ClickHouse rollups), as a resumable, verified job", runEraseStudent},
		{"jobs work", "[--once] [--poll DURATION]",
			"run the privacy jobs the admin API queues, and resume those whose runner stopped", runJobsWork},
		{"erase status", "JOB", "show an erasure job and its verification log", jobStatus("erase status")},
		{"export student", exportStudentSynopsis,
			"a student's access request (FERPA, GDPR, DPDP): everything held about them, one zip with a manifest, as a job", runExportStudent},
		{"export tenant", exportTenantSynopsis,
			"export a district: every table of its schema and its events, gzip files and a manifest, as a job", runExportTenant},
		{"export status", "JOB", "show an export job and what each store held", jobStatus("export status")},
		{"tenant delete", "--id ID --confirm ID", "delete a district: revoke its keys, drop its schema", runTenantDelete},
		{"instance add", "--name NAME --url-env VAR [--default]", "register a PostgreSQL instance for districts", runInstanceAdd},
		{"instance list", "", "list PostgreSQL instances", runInstanceList},
		{"rebuild", rebuildSynopsis, "rebuild a district's sink state from a replay, compare, swap in", runRebuild},
		{"replay", replaySynopsis, "republish a district's archived raw records of some days that the enricher has not passed on", runReplay},
		{"tenant limits", "[--id ID]", "show districts' ingest settings (rate limit, hot shards)", runTenantLimits},
		{"tenant set-limits", "--id ID (--events-per-sec N [--burst N] | --default)",
			"set a district's rate limit (across all gateway instances)", runTenantSetLimits},
		{"tenant set-hot", "--id ID --shards N", "spread a district over N sub-keys (0: not hot)", runTenantSetHot},
		{"tenant timezones", "[--id ID]", "show districts' time zones (where their analytics' days begin)", runTenantTimezones},
		{"tenant set-timezone", "--id ID --timezone ZONE", "set a district's IANA time zone (default UTC)", runTenantSetTimezone},
		{"keys create", "--tenant ID --source SOURCE [--verbs " + strings.Join(credentials.Verbs(), ",") + "]",
			"issue an API key (shown once)", runKeysCreate},
		{"keys list", "--tenant ID", "list a district's API keys (never their secrets)", runKeysList},
		{"keys revoke", "--id KEYID", "revoke an API key", runKeysRevoke},
		{"keys rotate-district", "--tenant ID [--master-keys KEYS | --master-key-file FILE]",
			"give a district a new KEK and re-wrap its data keys under it (sealed data is not rewritten)", runKeysRotateDistrict},
		{"keys rotate-master", "[--master-keys KEYS | --master-key-file FILE]",
			"re-wrap every district's keys under the current (first) master key", runKeysRotateMaster},
		{"keys new-master", "--id ID", "print a new master key entry (id:base64key) for MASTER_KEYS", runKeysNewMaster},
		{"token create", tokenCreateSynopsis, "issue a dashboard token with a role and scope, or a billing token of no district (shown once)", runTokenCreate},
		{"token list", "(--tenant ID | --platform)", "list a district's dashboard tokens, or the platform's (never their secrets)", runTokenList},
		{"token revoke", "--id TOKENID", "revoke a dashboard token", runTokenRevoke},
		{"audit verify", "[--head SEQ:HASH] [--published]",
			"check the audit log's keyed chain, naming every break (and that recorded or published heads are still there)", runAuditVerify},
		{"audit list", "[--tenant ID] [--since TIME] [--limit N]", "show the newest audit entries: who did what, to which district, when", runAuditList},
		{"audit head", "[--publish]", "print the head of the intact audit log; --publish also puts it on the audit-heads topic", runAuditHead},
		{"policy get", "(--tenant ID | --template ferpa|coppa|dpdp)", "show a district's privacy policy, or a template", runPolicyGet},
		{"policy set", "--tenant ID (--template ferpa|coppa|dpdp | --file policy.json)",
			"store a district's next policy version", runPolicySet},
		{"webhook set", "--tenant ID --url URL", "give a district a webhook told when its jobs finish (its signing secret is shown once)", runWebhookSet},
		{"webhook show", "--tenant ID", "show a district's webhook and its latest notifications", runWebhookShow},
		{"webhook remove", "--tenant ID", "remove a district's webhook and the record of its notifications", runWebhookRemove},
		{"webhook test", "--tenant ID", "send a signed ping to a district's webhook", runWebhookTest},
		{"webhook retry", "--tenant ID", "send again a district's notifications that were not delivered", runWebhookRetry},
		{"roster uploads list", rosterUploadsSynopsis, "show a district's roster uploads: per file, rows received, accepted, rejected, held, and what changed", runRosterUploads},
		{"roster approve", rosterDecideSynopsis + " (Kafka flags: -h)", "apply a held roster upload as it was compared (refused if the source sent another since)", runRosterApprove},
		{"roster reject", rosterDecideSynopsis, "discard a held roster upload", runRosterReject},
		{"roster held", "--tenant ID [--limit N]", "show records held for references they lack, and those that expired", runRosterHeld},
		{"roster settings", rosterSettingsSynopsis, "show or set a district's roster safety thresholds", runRosterSettings},
		{"usage report", usageSynopsis, "what each district used in a month, for billing: events received by type, active students, roster students, storage (PostgreSQL; ClickHouse apportioned), exports and erasures done", runUsageReport},
		{"quality report", qualitySynopsis, "a district's data quality: roster (held uploads, rejected rows, sent vs stored, held references, orphans, silent sources, schema drift), personal data found in free text and, with ClickHouse, events (volume anomalies, ClickHouse vs the sink)", runQualityReport},
		{"mapping apply", mappingApplySynopsis, "store a source's mapping rules (YAML) as its next version, once they parse", runMappingApply},
		{"mapping preview", mappingPreviewSynopsis, "map an export with a source's rules (or --rules FILE): the first rows and every error; nothing is ingested", runMappingPreview},
		{"mapping list", "--tenant ID [--source SRC]", "list a district's mapping rules versions", runMappingList},
		{"mapping show", "--tenant ID --source SRC [--version N]", "print a source's mapping rules", runMappingShow},
		{"connector add", connectorAddSynopsis, "register a source the connector pulls (OneRoster REST) or a file drop; issues its API key and prints its webhook key once", runConnectorAdd},
		{"connector remove", "--tenant ID --source SRC", "remove a connector source and revoke its API key", runConnectorRemove},
		{"connector status", "[--tenant ID]", "show the connector sources: last sync, failures in a row, last error, cursor", runConnectorStatus},
		{"dlq list", "[--tenant ID] [--reason REASON] [--limit N]", "show dead letters (Kafka flags: -h)", runDLQList},
		{"dlq replay", "[--tenant ID] [--reason REASON] [--limit N] [--again] [--dry-run]",
			"send dead letters back to raw, original bytes and headers, once", runDLQReplay},
	}
}

// Usage is ctl's help text.
func Usage() string {
	var b strings.Builder
	b.WriteString("ctl operates the edtech-analytics control plane.\n\nUsage:\n")
	for _, c := range commands() {
		line := "ctl " + c.name
		if c.synopsis != "" {
			line += " " + c.synopsis
		}
		if len(line) > 46 {
			fmt.Fprintf(&b, "  %s\n  %-46s  %s\n", line, "", c.summary)
		} else {
			fmt.Fprintf(&b, "  %-46s  %s\n", line, c.summary)
		}
	}
	b.WriteString(`
Flags of every command:
  --database-url URL   PostgreSQL URL (default: $` + EnvDatabaseURL + `)
  --output text|json   output format (default text)

Run 'ctl COMMAND -h' for a command's flags.
`)
	return b.String()
}

// Run runs the command named by args.
func Run(ctx context.Context, args []string, e Env) error {
	if len(args) == 0 {
		return withUsage(e.Stderr, usagef("no command given"))
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		_, err := io.WriteString(e.Stdout, Usage())
		return err
	}
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			err := c.run(ctx, e, args[len(words):])
			if errors.Is(err, flag.ErrHelp) {
				return nil // the flag set printed the command's usage
			}
			return err
		}
	}
	return withUsage(e.Stderr, usagef("unknown command %q", strings.Join(args[:min(len(args), 2)], " ")))
}

// withUsage prints the usage text to w and returns err, joined with the write's error if it failed.
func withUsage(w io.Writer, err error) error {
	if _, werr := io.WriteString(w, Usage()); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

// errWriter writes to w until a write fails and keeps that first error, so that writes with no error
// path of their own (a flag set's usage, progress callbacks, the rows of a table) are checked once, at
// the end. It is safe for concurrent use.
type errWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (o *errWriter) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	o.err = err
	return n, err
}

func (o *errWriter) printf(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		_, o.err = fmt.Fprintf(o.w, format, args...)
	}
}

// Err returns the first write error, nil if every write succeeded.
func (o *errWriter) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// common holds the flags every command takes, and the stderr the flag set writes its messages to.
type common struct {
	databaseURL string
	output      string
	flagOutput  *errWriter
	// outputs are the formats --output takes besides text and json (set before parse).
	outputs []string
}

// newFlags returns a flag set for command name with the common flags registered.
func newFlags(e Env, name, synopsis string) (*flag.FlagSet, *common) {
	fs := flag.NewFlagSet("ctl "+name, flag.ContinueOnError)
	c := &common{flagOutput: &errWriter{w: e.Stderr}}
	fs.SetOutput(c.flagOutput)
	fs.Usage = func() {
		c.flagOutput.printf("Usage: ctl %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL URL (default: $"+EnvDatabaseURL+")")
	fs.StringVar(&c.output, "output", "text", "output format: text or json")
	return fs, c
}

// parse parses args and checks the common flags and that no positional arguments are left. After -h it
// returns flag.ErrHelp, which Run turns into success.
func parse(fs *flag.FlagSet, c *common, args []string) error {
	if err := fs.Parse(args); err != nil {
		werr := c.flagOutput.Err() // the flag set printed the error and its usage
		if errors.Is(err, flag.ErrHelp) {
			if werr != nil {
				return fmt.Errorf("writing usage: %w", werr)
			}
			return err
		}
		if werr != nil {
			return errors.Join(usagef("%s: %v", fs.Name(), err), werr)
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if err := conf.Check(fs); err != nil {
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	if formats := append([]string{"text", "json"}, c.outputs...); !slices.Contains(formats, c.output) {
		return usagef("--output: %q is not %s", c.output, strings.Join(formats, ", "))
	}
	return nil
}

// required checks that each named flag was given a non-empty value.
func required(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		if fs.Lookup(n).Value.String() == "" {
			return usagef("%s: --%s is required", fs.Name(), n)
		}
	}
	return nil
}

// requiredTenant checks that --tenant was given a valid district id.
func requiredTenant(fs *flag.FlagSet, id string) error {
	if err := required(fs, "tenant"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(id); err != nil {
		return usagef("--tenant: %w", err)
	}
	return nil
}

// connect opens a pool on the database named by --database-url or the environment.
func connect(ctx context.Context, e Env, c *common) (*pgxpool.Pool, error) {
	url := c.databaseURL
	if url == "" {
		url = e.Getenv(EnvDatabaseURL)
	}
	if url == "" {
		return nil, usagef("no database: set %s or pass --database-url", EnvDatabaseURL)
	}
	pool, err := pgutil.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	return pool, nil
}

// controlPlane is the control plane's stores over one connection to the control database: ctl
// administers all of it.
type controlPlane struct {
	pool        *pgxpool.Pool
	fleet       *fleet.Fleet
	tenants     *tenants.Store
	credentials *credentials.Store
	policies    *privacy.Store
	audit       *audit.Store
	ingest      *ingest.Store

	env    Env                // the command's streams and environment
	master keyring.MasterKeys // set by withKeyring; nil otherwise
}

// record appends an audit entry for a command ctl ran.
func (cp controlPlane) record(ctx context.Context, tenantID, action string, detail any) error {
	_, err := cp.audit.Append(ctx, "ctl", tenantID, action, detail)
	return err
}

// envAuditKeys gives the audit key through the master keys of the environment (MASTER_KEYS or
// MASTER_KEY_FILE), read when an entry is first written or verified, so that commands that write none
// run without them.
func envAuditKeys(pool *pgxpool.Pool, e Env) audit.Keys { return envKeys(pool, e) }

// envKeys is the keyring of the master keys of the environment, loaded when first used: the audit key,
// and the data keys a rebuild opens sealed fields with.
func envKeys(pool *pgxpool.Pool, e Env) *lazyKeys {
	return &lazyKeys{load: sync.OnceValues(func() (*keyring.Keyring, error) {
		master, err := masterKeys(e, "", "")
		if err != nil {
			return nil, fmt.Errorf("the audit log and the sealed fields need the keys the master keys wrap: %w (set %s)", err, keyring.EnvMasterKeys)
		}
		return keyring.New(pool, master, keyring.Options{}), nil
	})}
}

type lazyKeys struct {
	load func() (*keyring.Keyring, error)
}

func (k *lazyKeys) AuditKey(ctx context.Context) ([]byte, error) {
	kr, err := k.load()
	if err != nil {
		return nil, err
	}
	return kr.AuditKey(ctx)
}

func (k *lazyKeys) Preload(ctx context.Context, values []string) error {
	kr, err := k.load()
	if err != nil {
		return err
	}
	return kr.Preload(ctx, values)
}

func (k *lazyKeys) Open(ctx context.Context, tenant, v string) (string, error) {
	kr, err := k.load()
	if err != nil {
		return "", err
	}
	return kr.Open(ctx, tenant, v)
}

// withControl connects, runs fn with the control plane's stores and closes the pool. It adds a hint when
// the control schema has not been migrated yet.
func withControl(ctx context.Context, e Env, c *common, fn func(cp controlPlane) error) error {
	pool, err := connect(ctx, e, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	instances := fleet.New(pool, e.Getenv)
	defer instances.Close()
	err = fn(controlPlane{pool: pool, fleet: instances, tenants: tenants.New(instances), credentials: credentials.New(pool),
		policies: privacy.New(pool), audit: audit.New(pool, envAuditKeys(pool, e)), ingest: ingest.New(pool), env: e})
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w (has 'ctl migrate' been run?)", err)
	}
	return err
}

// flagError names the flag whose value tenancy refused.
func flagError(flagName string, err error) error {
	if errors.Is(err, tenancy.ErrInvalidArgument) {
		return fmt.Errorf("--%s: %w", flagName, err)
	}
	return err
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing json: %w", err)
	}
	return nil
}

// writeList prints items as a JSON array, or as a table with header and one row per item.
func writeList[T any](w io.Writer, output string, items []T, header []string, row func(T) []string) error {
	if output == "json" {
		if items == nil {
			items = []T{} // [] rather than null
		}
		return writeJSON(w, items)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	out := &errWriter{w: tw}
	out.printf("%s\n", strings.Join(header, "\t"))
	for _, it := range items {
		out.printf("%s\n", strings.Join(row(it), "\t"))
	}
	if err := flushTable(tw, out); err != nil {
		return fmt.Errorf("writing list: %w", err)
	}
	return nil
}

// flushTable flushes tw after rows were written to it through out, and returns the first error.
func flushTable(tw *tabwriter.Writer, out *errWriter) error {
	err := out.Err()
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	return err
}

// formatTime renders an optional time in UTC to the second, or "-".
func formatTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// districtCommand is what a command that changes one district across the fleet opens: the control pool,
// the fleet of instances, and the district's audit log.
type districtCommand struct {
	pool      *pgxpool.Pool
	instances *fleet.Fleet
	keys      *lazyKeys
	record    func(action string, detail any) error
}

// openDistrictCommand connects for a command on district tenant; close ends what it opened.
func openDistrictCommand(ctx context.Context, e Env, c *common, tenant string) (*districtCommand, error) {
	pool, err := connect(ctx, e, c)
	if err != nil {
		return nil, err
	}
	keys := envKeys(pool, e)
	return &districtCommand{pool: pool, instances: fleet.New(pool, e.Getenv), keys: keys, record: func(action string, detail any) error {
		_, err := audit.New(pool, keys).Append(ctx, "ctl", tenant, action, detail)
		return err
	}}, nil
}

func (d *districtCommand) close() {
	d.instances.Close()
	d.pool.Close()
}
