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

// webhookCmd is a webhook command's flags: --tenant, and the master keys for a command that seals or opens
// the signing secret.
type webhookCmd struct {
	fs         *flag.FlagSet
	c          *common
	tenant     *string
	keys, file *string // nil: the command does not need the master keys
}

func newWebhookCmd(e Env, name, synopsis string, keyed bool) *webhookCmd {
	fs, c := newFlags(e, "webhook "+name, synopsis)
	w := &webhookCmd{fs: fs, c: c, tenant: fs.String("tenant", "", "tenant (district) id")}
	if keyed {
		w.keys, w.file = masterFlags(fs)
	}
	return w
}

// parse parses args and checks --tenant.
func (w *webhookCmd) parse(args []string) error {
	if err := parse(w.fs, w.c, args); err != nil {
		return err
	}
	return requiredTenant(w.fs, *w.tenant)
}

// run runs fn with the control plane and the webhooks store (which opens secrets if the command is keyed).
func (w *webhookCmd) run(ctx context.Context, e Env, fn func(cp controlPlane, store *webhooks.Store) error) error {
	if w.keys == nil {
		return withControl(ctx, e, w.c, func(cp controlPlane) error {
			return fn(cp, webhooks.New(cp.pool, nil, webhooks.Options{}))
		})
	}
	return withKeyring(ctx, e, w.c, *w.keys, *w.file, func(cp controlPlane, _ *keyring.Keyring) error {
		return fn(cp, webhooks.New(cp.pool, cp.master, webhooks.Options{}))
	})
}

// webhookDetail is what the audit log keeps of a webhook: its URL without any password.
func webhookDetail(w webhooks.Webhook) map[string]string {
	return map[string]string{"url": w.Redacted()}
}

func runWebhookSet(ctx context.Context, e Env, args []string) error {
	cmd := newWebhookCmd(e, "set", "--tenant ID --url URL", true)
	rawURL := cmd.fs.String("url", "", "where the district's finished jobs are POSTed: an http:// or https:// URL")
	if err := cmd.parse(args); err != nil {
		return err
	}
	if err := required(cmd.fs, "url"); err != nil {
		return err
	}
	if _, err := webhooks.ValidURL(*rawURL); err != nil {
		return usagef("--url: %w", err)
	}
	return cmd.run(ctx, e, func(cp controlPlane, store *webhooks.Store) error {
		w, secret, err := store.Set(ctx, *cmd.tenant, *rawURL)
		if err != nil {
			return err
		}
		if err := cp.record(ctx, w.TenantID, "webhook.set", webhookDetail(w)); err != nil {
			return err
		}
		const note = "This is the only time the signing secret is shown: give it to the receiver now, it cannot be shown again."
		if cmd.c.output == "json" {
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
	cmd := newWebhookCmd(e, "show", "--tenant ID", false)
	if err := cmd.parse(args); err != nil {
		return err
	}
	return cmd.run(ctx, e, func(_ controlPlane, store *webhooks.Store) error {
		w, err := store.Get(ctx, *cmd.tenant)
		if err != nil {
			return err
		}
		w.URL = w.Redacted()
		deliveries, err := store.Deliveries(ctx, *cmd.tenant, 10)
		if err != nil {
			return err
		}
		if cmd.c.output == "json" {
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
		return writeDeliveries(e, "text", deliveries)
	})
}

// writeDeliveries prints notifications as a table, or as JSON.
func writeDeliveries(e Env, output string, deliveries []webhooks.Delivery) error {
	return writeList(e.Stdout, output, deliveries, []string{"JOB", "ATTEMPTS", "LAST STATUS", "DELIVERED", "NEXT ATTEMPT", "LAST ERROR"},
		func(d webhooks.Delivery) []string {
			status := "-"
			if d.LastStatus != nil {
				status = strconv.Itoa(*d.LastStatus)
			}
			return []string{d.JobID, strconv.Itoa(d.Attempts), status, formatTime(d.DeliveredAt), formatTime(d.NextAttemptAt), d.LastError}
		})
}

func runWebhookRemove(ctx context.Context, e Env, args []string) error {
	cmd := newWebhookCmd(e, "remove", "--tenant ID", false)
	if err := cmd.parse(args); err != nil {
		return err
	}
	return cmd.run(ctx, e, func(cp controlPlane, store *webhooks.Store) error {
		w, err := store.Get(ctx, *cmd.tenant)
		if err != nil {
			return err
		}
		if err := store.Remove(ctx, *cmd.tenant); err != nil {
			return err
		}
		if err := cp.record(ctx, *cmd.tenant, "webhook.remove", webhookDetail(w)); err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.Stdout, "removed the webhook of district %s (%s)\n", *cmd.tenant, w.Redacted())
		return err
	})
}

func runWebhookTest(ctx context.Context, e Env, args []string) error {
	cmd := newWebhookCmd(e, "test", "--tenant ID", true)
	if err := cmd.parse(args); err != nil {
		return err
	}
	return cmd.run(ctx, e, func(cp controlPlane, store *webhooks.Store) error {
		status, pingErr := store.Ping(ctx, *cmd.tenant)
		if errors.Is(pingErr, tenancy.ErrNotFound) {
			return pingErr
		}
		detail := map[string]any{"status": status}
		if pingErr != nil {
			detail["error"] = pingErr.Error()
		}
		if err := cp.record(ctx, *cmd.tenant, "webhook.test", detail); err != nil || pingErr != nil {
			return errors.Join(pingErr, err)
		}
		_, err := fmt.Fprintf(e.Stdout, "the webhook of district %s answered the ping with %d\n", *cmd.tenant, status)
		return err
	})
}

func runWebhookRetry(ctx context.Context, e Env, args []string) error {
	cmd := newWebhookCmd(e, "retry", "--tenant ID", true)
	if err := cmd.parse(args); err != nil {
		return err
	}
	return cmd.run(ctx, e, func(cp controlPlane, store *webhooks.Store) error {
		deliveries, sendErr := store.Redeliver(ctx, *cmd.tenant)
		if errors.Is(sendErr, tenancy.ErrNotFound) {
			return sendErr
		}
		if err := cp.record(ctx, *cmd.tenant, "webhook.retry", deliveries); err != nil {
			return errors.Join(sendErr, err)
		}
		return errors.Join(sendErr, writeDeliveries(e, cmd.c.output, deliveries))
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
