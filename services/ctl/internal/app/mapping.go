package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edtech-analytics/platform/libs/mapping"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
)

const (
	mappingApplySynopsis   = "--tenant ID --source SRC RULES.yaml [--by NAME]"
	mappingPreviewSynopsis = "--tenant ID --source SRC EXPORT_FILE [--export NAME] [--rows N] [--version N]"
)

// fileArg takes the one positional argument of a command whose flags may come before or after it.
func fileArg(name string, args []string) (string, []string, error) {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") && (i == 0 || !strings.HasPrefix(args[i-1], "-") || strings.Contains(args[i-1], "=")) {
			return a, append(append([]string{}, args[:i]...), args[i+1:]...), nil
		}
	}
	return "", args, usagef("%s: give the file", name)
}

func runMappingApply(ctx context.Context, e Env, args []string) error {
	file, rest, err := fileArg("mapping apply", args)
	if err != nil {
		return err
	}
	fs, c := newFlags(e, "mapping apply", mappingApplySynopsis)
	tenantID := fs.String("tenant", "", "tenant (district) id")
	source := fs.String("source", "", "the source whose exports the rules map (the API key's source)")
	by := fs.String("by", "", "who stores them, for the record (default: $USER)")
	if err := parse(fs, c, rest); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	if *source == "" {
		return usagef("mapping apply: --source is required")
	}
	text, err := os.ReadFile(file)
	if err != nil {
		return usagef("mapping apply: %w", err)
	}
	if *by == "" {
		*by = e.Getenv("USER")
	}
	if *by == "" {
		*by = "ctl"
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		v, err := mappings.New(cp.pool).Set(ctx, *tenantID, *source, text, *by)
		if errors.Is(err, mapping.ErrInvalidRules) {
			return fmt.Errorf("%s: %w", file, err)
		}
		if err != nil {
			return err
		}
		if err := cp.record(ctx, *tenantID, "mapping.apply", map[string]any{"source": *source, "version": v.Version, "exports": v.Exports, "by": *by}); err != nil {
			return err
		}
		if c.output == "json" {
			v.Text = ""
			return writeJSON(e.Stdout, v)
		}
		_, err = fmt.Fprintf(e.Stdout, "source %s of district %s: mapping rules version %d (exports %s); uploads use them from now on\n",
			*source, *tenantID, v.Version, strings.Join(v.Exports, ", "))
		return err
	})
}

func runMappingList(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "mapping list", "--tenant ID [--source SRC]")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	source := fs.String("source", "", "only this source")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		list, err := mappings.New(cp.pool).List(ctx, *tenantID, *source)
		if err != nil {
			return err
		}
		return writeList(e.Stdout, c.output, list, []string{"SOURCE", "VERSION", "EXPORTS", "STORED", "BY"}, func(v mappings.Version) []string {
			return []string{v.SourceID, strconv.Itoa(v.Version), strings.Join(v.Exports, ","), formatTime(&v.CreatedAt), v.CreatedBy}
		})
	})
}

func runMappingShow(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "mapping show", "--tenant ID --source SRC [--version N]")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	source := fs.String("source", "", "the source")
	version := fs.Int("version", 0, "this version (default: the current one)")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	if *source == "" {
		return usagef("mapping show: --source is required")
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		_, v, err := mappings.New(cp.pool).At(ctx, *tenantID, *source, *version)
		if err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, v)
		}
		_, err = fmt.Fprintf(e.Stdout, "# source %s of district %s, version %d, stored %s by %s\n%s", v.SourceID, v.TenantID, v.Version,
			formatTime(&v.CreatedAt), v.CreatedBy, v.Text)
		return err
	})
}

// previewRow is a mapped row as preview shows it.
type previewRow struct {
	File       string          `json:"file"`
	Line       int             `json:"line"`
	Collection string          `json:"collection,omitempty"`
	Record     json.RawMessage `json:"record,omitempty"`
	Errors     []string        `json:"errors,omitempty"`
}

// previewResult is what preview prints as JSON.
type previewResult struct {
	Version  int               `json:"rules_version"`
	Export   string            `json:"export"`
	Rows     int               `json:"rows"`
	Mapped   int               `json:"mapped"`
	Rejected int               `json:"rejected"`
	Shown    []previewRow      `json:"shown"`
	Errors   []previewRow      `json:"errors"`
	Findings []mapping.Finding `json:"findings"`
}

func runMappingPreview(ctx context.Context, e Env, args []string) error {
	file, rest, err := fileArg("mapping preview", args)
	if err != nil {
		return err
	}
	fs, c := newFlags(e, "mapping preview", mappingPreviewSynopsis)
	tenantID := fs.String("tenant", "", "tenant (district) id")
	source := fs.String("source", "", "the source whose rules map the export")
	export := fs.String("export", "", "the export of the rules that maps the file (default: the one whose match takes its name)")
	rows := fs.Int("rows", 10, "mapped rows to show")
	version := fs.Int("version", 0, "map with this version of the rules (default: the current one)")
	rulesFile := fs.String("rules", "", "map with this rules file instead of stored rules (to try rules before 'mapping apply')")
	if err := parse(fs, c, rest); err != nil {
		return err
	}
	if *rulesFile == "" {
		if err := requiredTenant(fs, *tenantID); err != nil {
			return err
		}
		if *source == "" {
			return usagef("mapping preview: --source is required (or --rules FILE)")
		}
	}
	body, err := os.Open(file)
	if err != nil {
		return usagef("mapping preview: %w", err)
	}
	defer func() { _ = body.Close() }() // read-only
	preview := func(rules *mapping.Rules, v int) error {
		exp, ok := rules.Match(filepath.Base(file))
		if *export != "" {
			exp, ok = rules.Export(*export)
		}
		if !ok {
			return fmt.Errorf("no export of the rules matches %s (exports: %s); name one with --export", filepath.Base(file), strings.Join(rules.Exports(), ", "))
		}
		res := previewResult{Version: v, Export: exp.Name(), Shown: []previewRow{}, Errors: []previewRow{}, Findings: []mapping.Finding{}}
		err := exp.Map(filepath.Base(file), body, func(row mapping.Row) error {
			res.Rows++
			res.Findings = append(res.Findings, row.Findings...)
			if row.Errors != nil {
				res.Rejected++
				pr := previewRow{File: row.File, Line: row.Line}
				for _, fe := range row.Errors {
					pr.Errors = append(pr.Errors, fe.Error())
				}
				res.Errors = append(res.Errors, pr)
				return nil
			}
			res.Mapped++
			if len(res.Shown) < *rows {
				res.Shown = append(res.Shown, previewRow{File: row.File, Line: row.Line, Collection: row.Collection, Record: row.Record})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, res)
		}
		out := &errWriter{w: e.Stdout}
		out.printf("%s: export %s (rules version %d) -> %s: %d rows, %d mapped, %d rejected, %d findings; nothing was ingested\n",
			file, exp.Name(), v, exp.Collection(), res.Rows, res.Mapped, res.Rejected, len(res.Findings))
		for _, r := range res.Shown {
			out.printf("  %s:%d %s\n", r.File, r.Line, r.Record)
		}
		for _, r := range res.Errors {
			for _, msg := range r.Errors {
				out.printf("  error %s\n", msg)
			}
		}
		for _, f := range res.Findings {
			out.printf("  finding %s: %s %s (%s)\n", f.Position, f.Target, f.Message, f.Kind)
		}
		return out.err
	}
	if *rulesFile != "" {
		text, err := os.ReadFile(*rulesFile)
		if err != nil {
			return usagef("--rules: %w", err)
		}
		rules, err := mapping.Parse(text, mapping.Limits{})
		if err != nil {
			return fmt.Errorf("%s: %w", *rulesFile, err)
		}
		return preview(rules, 0)
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		rules, v, err := mappings.New(cp.pool).At(ctx, *tenantID, *source, *version)
		if err != nil {
			return err
		}
		return preview(rules, v.Version)
	})
}
