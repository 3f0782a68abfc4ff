package app

import (
	"context"
	"fmt"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
)

const tokenCreateSynopsis = "(--tenant ID --role district_admin|school_admin|teacher|parent | --role billing) [--school ID,...] [--teacher SOURCED_ID] [--student SIS_ID,...] [--label TEXT] [--ttl DURATION]"

func runTokenCreate(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "token create", tokenCreateSynopsis)
	tenantID := fs.String("tenant", "", "tenant (district) id; none for a platform role ("+strings.Join(credentials.PlatformRoles(), ", ")+")")
	role := fs.String("role", "", "role: "+strings.Join(credentials.Roles(), ", ")+
		"; or billing, a platform token of no district that reads every district's usage (GET /v1/usage) and no dashboard")
	schools := fs.String("school", "", "school_admin: comma-separated school ids the token may read")
	teacher := fs.String("teacher", "", "teacher: the teacher's roster sourced_id (their classes come from the roster)")
	students := fs.String("student", "", "parent: comma-separated roster sourced_ids (SIS ids) of the parent's children, at most 20")
	label := fs.String("label", "", "who or what the token is for")
	ttl := fs.Duration("ttl", 0, "expire the token after this long (0: never)")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "role"); err != nil {
		return err
	}
	switch {
	case credentials.IsPlatformRole(*role) && *tenantID != "":
		return usagef("--tenant: a %s token belongs to no district; leave --tenant out", *role)
	case credentials.IsPlatformRole(*role):
	case *tenantID == "":
		return usagef("%s: --tenant is required", fs.Name())
	default:
		if err := tenancy.ValidTenantID(*tenantID); err != nil {
			return usagef("--tenant: %w", err)
		}
	}
	tok := credentials.DashboardToken{TenantID: *tenantID, Role: *role, TeacherID: *teacher, Label: *label}
	if *schools != "" {
		tok.SchoolIDs = strings.Split(*schools, ",")
	}
	switch {
	case *role == credentials.RoleParent && strings.Trim(*students, ", ") == "":
		return usagef("--student: a parent token needs the roster sourced_ids (SIS ids) of the parent's children")
	case *role != credentials.RoleParent && *students != "":
		return usagef("--student: only a parent token takes students")
	case *students != "":
		tok.StudentIDs = strings.Split(*students, ",")
	}
	if *ttl < 0 {
		return usagef("--ttl: must not be negative")
	}
	if *ttl > 0 {
		at := time.Now().Add(*ttl)
		tok.ExpiresAt = &at
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		plaintext, tok, err := cp.credentials.CreateDashboardToken(ctx, tok)
		if err != nil {
			return flagError("role", err)
		}
		if _, err := cp.audit.Append(ctx, "ctl", tok.TenantID, "token.create", tok); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, struct {
				Token string `json:"token"`
				credentials.DashboardToken
				Note string `json:"note"`
			}{plaintext, tok, shownOnceNote})
		}
		owner := "tenant " + tok.TenantID
		if tok.TenantID == "" {
			owner = "the platform"
		}
		_, err = fmt.Fprintf(e.Stdout, "created dashboard token %s for %s (%s):\n\n    %s\n\n%s\n",
			tok.ID, owner, scopeText(tok), plaintext, shownOnceNote)
		return err
	})
}

// scopeText says what a token may read.
func scopeText(t credentials.DashboardToken) string {
	switch t.Role {
	case credentials.RoleSchoolAdmin:
		return "school_admin of " + strings.Join(t.SchoolIDs, ",")
	case credentials.RoleTeacher:
		return "teacher " + t.TeacherID
	case credentials.RoleParent:
		return "parent of " + strings.Join(t.StudentIDs, ",")
	}
	return t.Role
}

func runTokenList(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "token list", "(--tenant ID | --platform)")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	platform := fs.Bool("platform", false, "list the tokens of platform roles (billing), which belong to no district")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if *platform && *tenantID != "" {
		return usagef("%s: --tenant and --platform exclude each other", fs.Name())
	}
	if !*platform {
		if err := required(fs, "tenant"); err != nil {
			return err
		}
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		var (
			toks []credentials.DashboardToken
			err  error
		)
		if *platform {
			toks, err = cp.credentials.PlatformTokens(ctx)
		} else {
			toks, err = cp.credentials.DashboardTokens(ctx, *tenantID)
		}
		if err != nil {
			return err
		}
		return writeList(e.Stdout, c.output, toks, []string{"ID", "SCOPE", "LABEL", "CREATED", "EXPIRES", "LAST USED", "REVOKED"},
			func(t credentials.DashboardToken) []string {
				return []string{t.ID, scopeText(t), t.Label, formatTime(&t.CreatedAt), formatTime(t.ExpiresAt),
					formatTime(t.LastUsed), formatTime(t.RevokedAt)}
			})
	})
}

func runTokenRevoke(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "token revoke", "--id TOKENID")
	id := fs.String("id", "", "token id (the 12 characters after edt_)")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		tok, err := cp.credentials.RevokeDashboardToken(ctx, *id)
		if err != nil {
			return err
		}
		if _, err := cp.audit.Append(ctx, "ctl", tok.TenantID, "token.revoke", map[string]string{"id": tok.ID}); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, map[string]any{"id": tok.ID, "revoked": true})
		}
		_, err = fmt.Fprintf(e.Stdout, "revoked dashboard token %s\n", tok.ID)
		return err
	})
}

func runAuditVerify(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "audit verify", "[--head SEQ:HASH] [--published]")
	headFlag := fs.String("head", "", "a head printed by an earlier verify: the log must still hold it")
	published := fs.Bool("published", false, "the log must still hold every head published on the audit-heads topic")
	var kcfg kafkax.Config
	kcfg.RegisterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	var expect *audit.Head
	if *headFlag != "" {
		h, err := audit.ParseHead(*headFlag)
		if err != nil {
			return usagef("--head: %w", err)
		}
		expect = &h
	}
	var heads []audit.Head
	if *published {
		if err := kcfg.Validate(); err != nil {
			return usagef("kafka: %w", err)
		}
		var err error
		if heads, err = publishedHeads(ctx, kcfg); err != nil {
			return err
		}
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		head, err := cp.audit.Verify(ctx, expect, heads...)
		if err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, map[string]any{"ok": true, "entries": head.Seq, "head": head.String()})
		}
		_, err = fmt.Fprintf(e.Stdout, "audit log intact: %d entries, head %s\n(record the head elsewhere; pass it to --head later to detect a removed tail)\n",
			head.Seq, head)
		return err
	})
}
