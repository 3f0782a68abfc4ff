package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
)

const (
	rosterUploadsSynopsis  = "--tenant ID [--since DURATION] [--limit N] [--status STATUS]"
	rosterDecideSynopsis   = "UPLOAD [--tenant ID] [--by NAME]"
	rosterSettingsSynopsis = "--tenant ID [--max-deleted-pct N] [--max-changed-pct N] [--min-ledger-rows N] [--hold-refs-for DURATION] " +
		"[--max-rejected-pct N] [--max-held-refs-pct N] [--max-findings-pct N|off] [--min-upload-rows N] [--source SRC --expect-every DURATION]"
)

// rosterStore returns the roster import step's store over the control plane's instances.
func rosterStore(cp controlPlane) *rosters.Store {
	return rosters.New(fleet.NewDistrictPools(cp.fleet))
}

func runRosterUploads(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "roster uploads list", rosterUploadsSynopsis)
	tenantID := fs.String("tenant", "", "tenant (district) id")
	since := fs.Duration("since", 30*24*time.Hour, "uploads received within this long")
	limit := fs.Int("limit", 50, "at most N uploads, newest first")
	status := fs.String("status", "", "only uploads in this status: applied, held, approved, rejected, superseded")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	if *limit < 1 {
		return usagef("--limit: must be at least 1")
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		list, err := rosterStore(cp).Uploads(ctx, *tenantID, time.Now().Add(-*since), *limit)
		if err != nil {
			return err
		}
		if *status != "" {
			kept := list[:0]
			for _, u := range list {
				if u.Status == *status {
					kept = append(kept, u)
				}
			}
			list = kept
		}
		if c.output == "json" {
			if list == nil {
				list = []rosters.UploadInfo{}
			}
			return writeJSON(e.Stdout, list)
		}
		out := &errWriter{w: e.Stdout}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		tout := &errWriter{w: tw}
		tout.printf("%s\n", "UPLOAD\tSOURCE\tRECEIVED\tSTATUS\tFILE\tRECEIVED\tACCEPTED\tREJECTED\tHELD\tADDED\tCHANGED\tUNCHANGED\tDEACTIVATED\tOF ACTIVE")
		for _, u := range list {
			for i, f := range u.Files {
				id, source, at, st := "", "", "", ""
				if i == 0 {
					id, source, at, st = u.ID, u.SourceID, formatTime(&u.ReceivedAt), u.Status
				}
				tout.printf("%s\t%s\t%s\t%s\t%s (%s)\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", id, source, at, st, f.File, f.Mode,
					f.Received, f.Accepted, f.Rejected, f.Held, f.Added, f.Changed, f.Unchanged, f.Deactivated, f.LedgerActive)
			}
			if len(u.Files) == 0 {
				tout.printf("%s\t%s\t%s\t%s\t-\n", u.ID, u.SourceID, formatTime(&u.ReceivedAt), u.Status)
			}
			if u.Reason != "" {
				tout.printf("\t\t\t\t%s\n", u.Reason)
			}
		}
		if err := flushTable(tw, tout); err != nil {
			return err
		}
		return out.err
	})
}

// decideFlags parses the flags of roster approve and reject: the upload, its district (found when not
// given) and who decides.
func decideFlags(e Env, name string, args []string, kcfg *kafkax.Config) (*common, string, *string, string, error) {
	fs, c := newFlags(e, name, rosterDecideSynopsis)
	tenantID := fs.String("tenant", "", "the upload's district (default: found by the upload's id)")
	by := fs.String("by", "", "who decides, for the record (default: $USER)")
	if kcfg != nil {
		kcfg.RegisterFlags(fs)
	}
	upload, rest := "", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		upload, rest = args[0], args[1:]
	}
	if err := parse(fs, c, rest); err != nil {
		return nil, "", nil, "", err
	}
	if upload == "" && fs.NArg() == 1 {
		upload = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return nil, "", nil, "", usagef("%s: one upload id, then flags", name)
	}
	if upload == "" {
		return nil, "", nil, "", usagef("%s: give the upload's id ('ctl roster uploads list --tenant ID' shows them)", name)
	}
	if *tenantID != "" {
		if err := tenancy.ValidTenantID(*tenantID); err != nil {
			return nil, "", nil, "", usagef("--tenant: %w", err)
		}
	}
	if kcfg != nil {
		if err := kcfg.Validate(); err != nil {
			return nil, "", nil, "", usagef("kafka: %w", err)
		}
	}
	if *by == "" {
		*by = e.Getenv("USER")
	}
	if *by == "" {
		*by = "ctl"
	}
	return c, upload, tenantID, *by, nil
}

// uploadTenant returns the district that holds the upload: the one given, or the first whose uploads
// hold it.
func uploadTenant(ctx context.Context, cp controlPlane, store *rosters.Store, tenantID, upload string) (string, error) {
	if tenantID != "" {
		return tenantID, nil
	}
	all, err := cp.tenants.Tenants(ctx)
	if err != nil {
		return "", err
	}
	for _, t := range all {
		held, err := store.Find(ctx, t.ID, upload)
		if err != nil {
			return "", fmt.Errorf("looking for upload %s in district %s: %w", upload, t.ID, err)
		}
		if held {
			return t.ID, nil
		}
	}
	return "", fmt.Errorf("%w: %s in no district", rosters.ErrNotFound, upload)
}

func runRosterApprove(ctx context.Context, e Env, args []string) error {
	var kcfg kafkax.Config
	c, upload, tenantID, by, err := decideFlags(e, "roster approve", args, &kcfg)
	if err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		store := rosterStore(cp)
		tenant, err := uploadTenant(ctx, cp, store, *tenantID, upload)
		if err != nil {
			return err
		}
		producer, err := kafkax.NewProducer(kcfg, kafkax.Deps{})
		if err != nil {
			return err
		}
		defer producer.Close()
		raw := kcfg.Topics().Raw
		res, err := store.Approve(ctx, tenant, upload, by, func(ctx context.Context, recs []rosters.Encoded) error {
			out := make([]*kgo.Record, len(recs))
			for i, r := range recs {
				out[i] = &kgo.Record{Topic: raw, Key: r.Key, Value: r.Value}
			}
			return producer.ProduceSync(ctx, out...).FirstErr()
		})
		if errors.Is(err, rosters.ErrSuperseded) {
			if rerr := cp.record(ctx, tenant, "roster.superseded", map[string]any{"upload": upload, "by": by}); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		if err != nil {
			return err
		}
		if err := cp.record(ctx, tenant, "roster.approve", map[string]any{"upload": upload, "by": by, "sent": res.Sent}); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, res)
		}
		_, err = fmt.Fprintf(e.Stdout, "upload %s of district %s approved: %d records sent to raw, %d held for references, %d earlier held records released\n",
			upload, tenant, res.Sent, res.Held, res.Released)
		return err
	})
}

func runRosterReject(ctx context.Context, e Env, args []string) error {
	c, upload, tenantID, by, err := decideFlags(e, "roster reject", args, nil)
	if err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		store := rosterStore(cp)
		tenant, err := uploadTenant(ctx, cp, store, *tenantID, upload)
		if err != nil {
			return err
		}
		if err := store.Reject(ctx, tenant, upload, by); err != nil {
			return err
		}
		if err := cp.record(ctx, tenant, "roster.reject", map[string]any{"upload": upload, "by": by}); err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.Stdout, "upload %s of district %s rejected: nothing of it was sent\n", upload, tenant)
		return err
	})
}

func runRosterSettings(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "roster settings", rosterSettingsSynopsis)
	tenantID := fs.String("tenant", "", "tenant (district) id")
	del := fs.Float64("max-deleted-pct", -1, "hold an upload that would deactivate more than this percentage of an entity")
	chg := fs.Float64("max-changed-pct", -1, "hold an upload that would change more than this percentage of an entity")
	minRows := fs.Int("min-ledger-rows", -1, "check the thresholds only for entities of at least this many active records")
	refs := fs.Duration("hold-refs-for", 0, "how long a record waits for an entity it references before it expires")
	rejected := fs.Float64("max-rejected-pct", -1, "quality gate: hold an upload with more than this percentage of its rows rejected")
	heldRefs := fs.Float64("max-held-refs-pct", -1, "quality gate: hold an upload with more than this percentage of its records waiting for references")
	findings := fs.String("max-findings-pct", "", "quality gate: hold an upload with more findings per hundred rows than this (off: no check)")
	minUpload := fs.Int("min-upload-rows", -1, "quality gate: check only uploads of at least this many rows")
	source := fs.String("source", "", "with --expect-every: the source")
	every := fs.Duration("expect-every", 0, "how often the source is expected to send a roster (0: no expectation); the quality report flags a silent one")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["expect-every"] != (*source != "") {
		return usagef("roster settings: --source and --expect-every go together")
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		store := rosterStore(cp)
		if set["expect-every"] {
			if err := store.ExpectEvery(ctx, *tenantID, *source, *every); err != nil {
				return err
			}
			if err := cp.record(ctx, *tenantID, "roster.expect", map[string]any{"source": *source, "every": every.String()}); err != nil {
				return err
			}
		}
		st, err := store.Settings(ctx, *tenantID)
		if err != nil {
			return err
		}
		if set["max-deleted-pct"] || set["max-changed-pct"] || set["min-ledger-rows"] || set["hold-refs-for"] ||
			set["max-rejected-pct"] || set["max-held-refs-pct"] || set["max-findings-pct"] || set["min-upload-rows"] {
			if set["max-deleted-pct"] {
				st.MaxDeletedPct = *del
			}
			if set["max-changed-pct"] {
				st.MaxChangedPct = *chg
			}
			if set["min-ledger-rows"] {
				st.MinLedgerRows = *minRows
			}
			if set["hold-refs-for"] {
				st.HoldRefsFor = *refs
			}
			if set["max-rejected-pct"] {
				st.MaxRejectedPct = *rejected
			}
			if set["max-held-refs-pct"] {
				st.MaxHeldRefsPct = *heldRefs
			}
			if set["min-upload-rows"] {
				st.MinUploadRows = *minUpload
			}
			if set["max-findings-pct"] {
				st.MaxFindingsPct = nil
				if *findings != "off" {
					v, err := strconv.ParseFloat(*findings, 64)
					if err != nil {
						return usagef("roster settings: --max-findings-pct takes a number or off, not %q", *findings)
					}
					st.MaxFindingsPct = &v
				}
			}
			if err := store.SetSettings(ctx, *tenantID, st); err != nil {
				return usagef("roster settings: %w", err)
			}
			if err := cp.record(ctx, *tenantID, "roster.settings", st); err != nil {
				return err
			}
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, st)
		}
		findingsGate := "no findings check"
		if st.MaxFindingsPct != nil {
			findingsGate = fmt.Sprintf("over %g findings per hundred rows", *st.MaxFindingsPct)
		}
		_, err = fmt.Fprintf(e.Stdout, "district %s: hold uploads that deactivate over %g%% or change over %g%% of an entity of at least %d active records; "+
			"held references expire after %s; quality gate on uploads of at least %d rows: over %g%% rejected, over %g%% waiting for references, %s\n",
			*tenantID, st.MaxDeletedPct, st.MaxChangedPct, st.MinLedgerRows, st.HoldRefsFor, st.MinUploadRows, st.MaxRejectedPct, st.MaxHeldRefsPct, findingsGate)
		return err
	})
}

func runRosterHeld(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "roster held", "--tenant ID [--limit N]")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	limit := fs.Int("limit", 100, "at most N records, oldest first")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		refs, err := rosterStore(cp).HeldRefs(ctx, *tenantID, *limit)
		if err != nil {
			return err
		}
		return writeList(e.Stdout, c.output, refs, []string{"ENTITY", "SOURCED ID", "SOURCE", "WAITS FOR", "HELD", "EXPIRES", "STATUS", "UPLOAD"},
			func(h rosters.HeldRef) []string {
				return []string{h.Entity, h.SourcedID, h.SourceID, strings.Join(h.Missing, " "), formatTime(&h.HeldAt), formatTime(&h.ExpiresAt), h.Status, h.UploadID}
			})
	})
}
