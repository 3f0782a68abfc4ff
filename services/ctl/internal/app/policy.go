package app

import (
	"context"
	"fmt"
	"os"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
)

func runPolicyGet(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "policy get", "(--tenant ID | --template NAME)")
	tenantID := fs.String("tenant", "", "tenant (district) id: its current policy")
	template := fs.String("template", "", "a template instead (ferpa, coppa, dpdp), e.g. to start a custom policy from")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if (*tenantID == "") == (*template == "") {
		return usagef("policy get: give exactly one of --tenant and --template")
	}
	if *template != "" {
		p, err := privacy.Template(*template)
		if err != nil {
			return usagef("--template: %w", err)
		}
		return writeJSON(e.Stdout, p)
	}
	if err := tenancy.ValidTenantID(*tenantID); err != nil {
		return usagef("--tenant: %w", err)
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		p, err := cp.policies.Policy(ctx, *tenantID)
		if err != nil {
			return err
		}
		if c.output == "text" {
			if _, err := fmt.Fprintln(e.Stdout, policySummary(p)); err != nil {
				return err
			}
		}
		return writeJSON(e.Stdout, p)
	})
}

func runPolicySet(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "policy set", "--tenant ID (--template ferpa|coppa|dpdp | --file policy.json)")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	template := fs.String("template", "", "store this template: ferpa, coppa or dpdp")
	file := fs.String("file", "", "store this policy document (JSON; see 'ctl policy get --template ferpa')")
	by := fs.String("by", "", "who sets it, for the record (default: $USER)")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	var (
		p   privacy.Policy
		err error
	)
	switch {
	case (*template == "") == (*file == ""):
		return usagef("policy set: give exactly one of --template and --file")
	case *template != "":
		if p, err = privacy.Template(*template); err != nil {
			return usagef("--template: %w", err)
		}
	default:
		data, err := os.ReadFile(*file)
		if err != nil {
			return usagef("--file: %w", err)
		}
		if p, err = privacy.Parse(data); err != nil {
			return fmt.Errorf("--file %s: %w", *file, err)
		}
	}
	if *by == "" {
		*by = e.Getenv("USER")
	}
	if *by == "" {
		*by = "ctl"
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		stored, err := cp.policies.SetPolicy(ctx, *tenantID, p, *by)
		if err != nil {
			return err
		}
		if err := cp.record(ctx, *tenantID, "policy.set", map[string]any{"version": stored.Version, "template": stored.Template, "by": *by}); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, stored)
		}
		_, err = fmt.Fprintf(e.Stdout, "%s\nenrichers apply it within their policy refresh interval (default 30s)\n",
			policySummary(stored))
		return err
	})
}

func policySummary(p privacy.Policy) string {
	freeText := "personal data found in free text: " + p.FreeTextAction()
	if p.FreeText == nil {
		freeText += " (the default)"
	}
	if p.Version == 0 {
		return fmt.Sprintf("tenant %s: policy version 0 (the default %s template; never set); %s", p.TenantID, p.Template, freeText)
	}
	return fmt.Sprintf("tenant %s: policy version %d (%s), set %s by %s; %s", p.TenantID, p.Version, p.Template,
		formatTime(&p.CreatedAt), p.CreatedBy, freeText)
}
