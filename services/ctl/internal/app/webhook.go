package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/tenancy/webhooks"
)

// webhookFlags returns the flag set of a webhook command and its --tenant flag.
func webhookFlags(e Env, name, synopsis string) (*flag.FlagSet, *common, *string) {
	fs, c := newFlags(e, "webhook "+name, synopsis)
	return fs, c, fs.String("tenant", "", "tenant (district) id")
}

// webhookDetail is what the audit log keeps of a webhook: its URL without any password.
func webhookDetail(w webhooks.Webhook) map[string]string {
	return map[string]string{"url": w.Redacted()}
}

func runWebhookSet(ctx context.Context, e Env, args []string) error {
	fs, c, tenantID := webhookFlags(e, "set", "--tenant ID --url URL")
	rawURL := fs.String("url", "", "where the district's finished jobs are POSTed: an http:// or https:// URL")
	keys, file := masterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	if err := required(fs, "url"); err != nil {
		return err
	}
	if _, err := webhooks.ValidURL(*rawURL); err != nil {
		return usagef("--url: %w", err)
	}
	return withKeyring(ctx, e, c, *keys, *file, func(cp controlPlane, _ *keyring.Keyring) error {
		w, secret, err := webhooks.New(cp.pool, cp.master, webhooks.Options{}).Set(ctx, *tenantID, *rawURL)
		if err != nil {
			return err
		}
		if err := cp.record(ctx, w.TenantID, "webhook.set", webhookDetail(w)); err != nil {
			return err
		}
		const note = "This is the only time the signing secret is shown: give it to the receiver now, it cannot be shown again."
		if c.output == "json" {
			return writeJSON(e.Stdout, struct {
				webhooks.Webhook
				Secret string `json:"secret"`
				Note   string `json:"note"`
			}{w, secret, note})
		}
		_, err = fmt.Fprintf(e.Stdout, "webhook of district %s: %s\nsigning secret (HMAC-SHA256 key of X-Edtech-Signature):\n\n    %s\n\n%s\n",
			w.TenantID, w.Redacted(), secret, note)
		return err
	})
}

func runWebhookShow(ctx context.Context, e Env, args []string) error {
	fs, c, tenantID := webhookFlags(e, "show", "--tenant ID")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		store := webhooks.New(cp.pool, nil, webhooks.Options{})
		w, err := store.Get(ctx, *tenantID)
		if err != nil {
			return err
		}
		w.URL = w.Redacted()
		deliveries, err := store.Deliveries(ctx, *tenantID, 10)
		if err != nil {
			return err
		}
		if c.output == "json" {
			if deliveries == nil {
				deliveries = []webhooks.Delivery{}
			}
			return writeJSON(e.Stdout, struct {
				webhooks.Webhook
				Deliveries []webhooks.Delivery `json:"deliveries"`
			}{w, deliveries})
		}
		if _, err := fmt.Fprintf(e.Stdout, "webhook of district %s: %s (set %s)\n\n", w.TenantID, w.URL, formatTime(&w.CreatedAt)); err != nil {
			return err
		}
		return writeDeliveries(e, deliveries)
	})
}

// writeDeliveries prints notifications as a table.
func writeDeliveries(e Env, deliveries []webhooks.Delivery) error {
	return writeList(e.Stdout, "text", deliveries, []string{"JOB", "ATTEMPTS", "LAST STATUS", "DELIVERED", "NEXT ATTEMPT", "LAST ERROR"},
		func(d webhooks.Delivery) []string {
			status := "-"
			if d.LastStatus != nil {
				status = strconv.Itoa(*d.LastStatus)
			}
			return []string{d.JobID, strconv.Itoa(d.Attempts), status, formatTime(d.DeliveredAt), formatTime(d.NextAttemptAt), d.LastError}
		})
}

func runWebhookRemove(ctx context.Context, e Env, args []string) error {
	fs, c, tenantID := webhookFlags(e, "remove", "--tenant ID")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		store := webhooks.New(cp.pool, nil, webhooks.Options{})
		w, err := store.Get(ctx, *tenantID)
		if err != nil {
			return err
		}
		if err := store.Remove(ctx, *tenantID); err != nil {
			return err
		}
		if err := cp.record(ctx, *tenantID, "webhook.remove", webhookDetail(w)); err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.Stdout, "removed the webhook of district %s (%s)\n", *tenantID, w.Redacted())
		return err
	})
}

func runWebhookTest(ctx context.Context, e Env, args []string) error {
	fs, c, tenantID := webhookFlags(e, "test", "--tenant ID")
	keys, file := masterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	return withKeyring(ctx, e, c, *keys, *file, func(cp controlPlane, _ *keyring.Keyring) error {
		status, pingErr := webhooks.New(cp.pool, cp.master, webhooks.Options{}).Ping(ctx, *tenantID)
		if errors.Is(pingErr, tenancy.ErrNotFound) {
			return pingErr
		}
		detail := map[string]any{"status": status}
		if pingErr != nil {
			detail["error"] = pingErr.Error()
		}
		if err := cp.record(ctx, *tenantID, "webhook.test", detail); err != nil {
			return errors.Join(pingErr, err)
		}
		if pingErr != nil {
			return pingErr
		}
		_, err := fmt.Fprintf(e.Stdout, "the webhook of district %s answered the ping with %d\n", *tenantID, status)
		return err
	})
}

func runWebhookRetry(ctx context.Context, e Env, args []string) error {
	fs, c, tenantID := webhookFlags(e, "retry", "--tenant ID")
	keys, file := masterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	return withKeyring(ctx, e, c, *keys, *file, func(cp controlPlane, _ *keyring.Keyring) error {
		deliveries, sendErr := webhooks.New(cp.pool, cp.master, webhooks.Options{}).Redeliver(ctx, *tenantID)
		if errors.Is(sendErr, tenancy.ErrNotFound) {
			return sendErr
		}
		if err := cp.record(ctx, *tenantID, "webhook.retry", deliveries); err != nil {
			return errors.Join(sendErr, err)
		}
		var err error
		if c.output == "json" {
			if deliveries == nil {
				deliveries = []webhooks.Delivery{}
			}
			err = writeJSON(e.Stdout, deliveries)
		} else {
			err = writeDeliveries(e, deliveries)
		}
		return errors.Join(sendErr, err)
	})
}

// notifyFinished tells the district's webhook, if it has one, that the job finished (done or failed); a
// job left running, to be resumed, is not reported. The job does not depend on it: a notification that
// is not delivered is recorded (ctl webhook show) and printed as a warning, and ctl webhook retry sends it.
func (cp controlPlane) notifyFinished(ctx context.Context, store *jobs.Store, job jobs.Job) {
	warn := func(err error) {
		_, _ = fmt.Fprintf(cp.env.Stderr, "warning: job %s: the webhook of district %s was not notified: %v "+
			"('ctl webhook retry --tenant %s' sends it again)\n", job.ID, job.TenantID, err, job.TenantID)
	}
	job, err := store.Job(ctx, job.ID)
	if err != nil {
		warn(err)
		return
	}
	if job.Status != jobs.StatusDone && job.Status != jobs.StatusFailed {
		return
	}
	if _, err := webhooks.New(cp.pool, nil, webhooks.Options{}).Get(ctx, job.TenantID); errors.Is(err, tenancy.ErrNotFound) {
		return
	} else if err != nil {
		warn(err)
		return
	}
	master := cp.master
	if master == nil {
		if master, err = masterKeys(cp.env, "", ""); err != nil {
			warn(fmt.Errorf("its signing secret is sealed by the master keys: %w", err))
			return
		}
	}
	d, notifyErr := webhooks.New(cp.pool, master, webhooks.Options{}).Notify(ctx, job)
	if errors.Is(notifyErr, tenancy.ErrNotFound) {
		return // removed meanwhile
	}
	detail := map[string]any{"job": job.ID, "attempts": d.Attempts, "status": d.LastStatus, "delivered": d.Delivered()}
	if notifyErr != nil {
		detail["error"] = notifyErr.Error()
	}
	auditErr := cp.record(ctx, job.TenantID, "webhook.notify", detail)
	switch {
	case notifyErr != nil:
		warn(errors.Join(notifyErr, auditErr))
	case auditErr != nil:
		_, _ = fmt.Fprintf(cp.env.Stderr, "warning: job %s: the webhook of district %s was notified, but the audit log did not record it: %v\n",
			job.ID, job.TenantID, auditErr)
	default:
		_, _ = fmt.Fprintf(cp.env.Stderr, "job %s: the webhook of district %s was notified (%d attempts)\n", job.ID, job.TenantID, d.Attempts)
	}
}
