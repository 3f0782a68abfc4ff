package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
)

// publishedHead is a head of the audit log as it is published on the audit-heads topic.
type publishedHead struct {
	Head        string    `json:"head"` // SEQ:HASH
	PublishedAt time.Time `json:"published_at"`
}

// auditHeadKey keys every published head: one partition holds them in order.
var auditHeadKey = []byte("audit")

func runAuditHead(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "audit head", "[--publish]")
	publish := fs.Bool("publish", false, "also publish the head on the audit-heads topic, outside PostgreSQL (run it periodically)")
	var kcfg kafkax.Config
	kcfg.RegisterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if *publish {
		if err := kcfg.Validate(); err != nil {
			return usagef("kafka: %w", err)
		}
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		head, err := cp.audit.Verify(ctx, nil) // a head is only worth publishing from an intact chain
		if err != nil {
			return err
		}
		if *publish && head.Seq > 0 {
			b, err := json.Marshal(publishedHead{Head: head.String(), PublishedAt: time.Now().UTC()})
			if err != nil {
				return err
			}
			cl, err := kafkax.NewProducer(kcfg, kafkax.Deps{})
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: kcfg.Topics().AuditHeads, Key: auditHeadKey, Value: b}).FirstErr(); err != nil {
				return fmt.Errorf("publishing the audit head: %w", err)
			}
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, map[string]any{"entries": head.Seq, "head": head.String(), "published": *publish && head.Seq > 0})
		}
		_, err = fmt.Fprintln(e.Stdout, head.String())
		return err
	})
}

// publishedHeads reads every head published on the audit-heads topic.
func publishedHeads(ctx context.Context, kcfg kafkax.Config) ([]audit.Head, error) {
	reader, err := kafkax.NewReader(kcfg, kafkax.Deps{})
	if err != nil {
		return nil, err
	}
	defer reader.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var heads []audit.Head
	err = kafkax.ReadToEnd(rctx, reader.Client, kcfg.Topics().AuditHeads, nil, func(r *kgo.Record) error {
		var p publishedHead
		if err := json.Unmarshal(r.Value, &p); err != nil {
			return fmt.Errorf("published audit head at %d/%d: %w", r.Partition, r.Offset, err)
		}
		h, err := audit.ParseHead(p.Head)
		if err != nil {
			return fmt.Errorf("published audit head at %d/%d: %w", r.Partition, r.Offset, err)
		}
		heads = append(heads, h)
		return nil
	})
	return heads, err
}

func runAuditList(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "audit list", "[--tenant ID] [--since TIME] [--limit N]")
	tenantID := fs.String("tenant", "", "only this district's entries")
	since := fs.String("since", "", "only entries at or after this time (RFC 3339, or a date)")
	limit := fs.Int("limit", 100, "show at most the newest N entries")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	var from time.Time
	if *since != "" {
		var err error
		if from, err = time.Parse(time.RFC3339, *since); err != nil {
			if from, err = time.Parse(time.DateOnly, *since); err != nil {
				return usagef("--since: %q is not an RFC 3339 time or a date", *since)
			}
		}
	}
	if *limit < 1 {
		return usagef("--limit: must be at least 1")
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		entries, err := cp.audit.List(ctx, *tenantID, from, *limit)
		if err != nil {
			return err
		}
		return writeList(e.Stdout, c.output, entries, []string{"SEQ", "AT", "ACTOR", "TENANT", "ACTION", "DETAIL"},
			func(en audit.Entry) []string {
				return []string{fmt.Sprint(en.Seq), formatTime(&en.At), en.Actor, orDash(en.TenantID), en.Action, truncate(en.Detail, 80)}
			})
	})
}
