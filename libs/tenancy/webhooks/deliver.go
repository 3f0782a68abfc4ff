package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

// Events, in the X-Edtech-Event header and the body's "event" field.
const (
	EventJobFinished = "job.finished"
	EventPing        = "ping"
)

// ErrNotDelivered: the receiver did not accept a notification (an answer other than 2xx, or no answer)
// within the attempts allowed.
var ErrNotDelivered = errors.New("webhook notification not delivered")

// JobFinished is the body of a job.finished notification: the job's outcome and its verification log.
type JobFinished struct {
	Event      string      `json:"event"`
	ID         string      `json:"id"`
	Kind       string      `json:"kind"`
	Tenant     string      `json:"tenant"`
	Status     string      `json:"status"`
	Error      string      `json:"error"`
	Steps      []jobs.Step `json:"steps"`
	FinishedAt *time.Time  `json:"finished_at"`
}

// Delivery is the record of a finished job's notification.
type Delivery struct {
	JobID      string    `json:"job_id"`
	TenantID   string    `json:"tenant_id"`
	Attempts   int       `json:"attempts"`
	LastStatus *int      `json:"last_status"` // nil before an answer
	LastError  string    `json:"last_error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	// DeliveredAt is set once the receiver answered 2xx.
	DeliveredAt *time.Time `json:"delivered_at"`
	// NextAttemptAt is when the next attempt is due; nil once delivered or given up.
	NextAttemptAt *time.Time `json:"next_attempt_at"`
}

// Delivered reports whether the receiver accepted the notification.
func (d Delivery) Delivered() bool { return d.DeliveredAt != nil }

// Notify sends the finished job to its district's webhook, retrying as Options allow, and returns the
// delivery's record. A district without a webhook is tenancy.ErrNotFound and sends nothing; a job
// already delivered is not sent again; a notification the receiver did not accept is ErrNotDelivered
// (Redeliver tries again).
func (s *Store) Notify(ctx context.Context, job jobs.Job) (Delivery, error) {
	if job.Status != jobs.StatusDone && job.Status != jobs.StatusFailed {
		return Delivery{}, fmt.Errorf("%w: job %s is %s, not finished", tenancy.ErrInvalidArgument, job.ID, job.Status)
	}
	t, err := s.target(ctx, job.TenantID)
	if err != nil {
		return Delivery{}, err
	}
	if err := s.enqueue(ctx, job); err != nil {
		return Delivery{}, err
	}
	d, err := s.delivery(ctx, job.ID)
	if err != nil || d.Delivered() {
		return d, err
	}
	return s.deliver(ctx, t, job.ID)
}

// enqueue records the notification of a finished job, unless it is recorded already.
func (s *Store) enqueue(ctx context.Context, job jobs.Job) error {
	body, err := json.Marshal(JobFinished{Event: EventJobFinished, ID: job.ID, Kind: job.Kind, Tenant: job.TenantID,
		Status: job.Status, Error: job.Error, Steps: job.Steps, FinishedAt: job.FinishedAt})
	if err != nil {
		return fmt.Errorf("encoding job %s: %w", job.ID, err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO control.webhook_deliveries (job_id, tenant_id, body) VALUES ($1, $2, $3)
		ON CONFLICT (job_id) DO NOTHING`, job.ID, job.TenantID, body); err != nil {
		return fmt.Errorf("recording the notification of job %s: %w", job.ID, err)
	}
	return nil
}

// Redeliver sends every notification of the district that was not delivered, each with the attempts
// Options allow, and returns their records: those whose sender died or gave up, and those of jobs that
// finished since the webhook was set without a notification recorded (their runner died first).
func (s *Store) Redeliver(ctx context.Context, tenant string) ([]Delivery, error) {
	t, err := s.target(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if err := s.enqueueMissed(ctx, tenant, t.since); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT job_id::text FROM control.webhook_deliveries
		WHERE tenant_id = $1 AND delivered_at IS NULL ORDER BY created_at`, tenant)
	if err != nil {
		return nil, fmt.Errorf("reading the undelivered notifications of district %s: %w", tenant, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading the undelivered notifications of district %s: %w", tenant, err)
	}
	var out []Delivery
	var errs []error
	for _, id := range ids {
		d, err := s.deliver(ctx, t, id)
		if d.JobID != "" {
			out = append(out, d)
		}
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// enqueueMissed records the notifications of the district's jobs that finished since without one.
func (s *Store) enqueueMissed(ctx context.Context, tenant string, since time.Time) error {
	finished, err := s.jobs.FinishedSince(ctx, tenant, since)
	if err != nil {
		return err
	}
	rows, err := s.pool.Query(ctx, `SELECT job_id::text FROM control.webhook_deliveries WHERE tenant_id = $1`, tenant)
	if err != nil {
		return fmt.Errorf("reading the notifications of district %s: %w", tenant, err)
	}
	recorded, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("reading the notifications of district %s: %w", tenant, err)
	}
	for _, id := range finished {
		if slices.Contains(recorded, id) {
			continue
		}
		job, err := s.jobs.Job(ctx, id)
		if err != nil {
			return err
		}
		if err := s.enqueue(ctx, job); err != nil {
			return err
		}
	}
	return nil
}

// Deliveries returns the district's latest notifications, newest first.
func (s *Store) Deliveries(ctx context.Context, tenant string, limit int) ([]Delivery, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM control.webhook_deliveries
		WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT $2`, tenant, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the notifications of district %s: %w", tenant, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Delivery])
	if err != nil {
		return nil, fmt.Errorf("reading the notifications of district %s: %w", tenant, err)
	}
	return out, nil
}

// Ping sends one test notification to the district's webhook, without retrying or recording it, and
// returns the status the receiver answered; anything but 2xx is ErrNotDelivered.
func (s *Store) Ping(ctx context.Context, tenant string) (int, error) {
	t, err := s.target(ctx, tenant)
	if err != nil {
		return 0, err
	}
	body, err := json.Marshal(map[string]string{"event": EventPing, "tenant": tenant})
	if err != nil {
		return 0, err
	}
	a := s.post(ctx, t, EventPing, body)
	if a.err != nil {
		return a.status, fmt.Errorf("%w to %s: %w", ErrNotDelivered, redacted(t.url), a.err)
	}
	return a.status, nil
}

const deliveryColumns = `job_id::text, tenant_id, attempts, last_status, last_error, created_at, delivered_at, next_attempt_at`

func (s *Store) delivery(ctx context.Context, jobID string) (Delivery, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM control.webhook_deliveries WHERE job_id = $1`, jobID)
	if err != nil {
		return Delivery{}, fmt.Errorf("reading the notification of job %s: %w", jobID, err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[Delivery])
	if err != nil {
		return Delivery{}, fmt.Errorf("reading the notification of job %s: %w", jobID, err)
	}
	return d, nil
}

// deliver sends a recorded notification until the receiver accepts it, it refuses it for good (an answer
// other than 2xx, 429 or 5xx), or the attempts allowed run out, recording each attempt and when the next
// is due. A sender stopped by ctx leaves the next attempt due, for Redeliver.
func (s *Store) deliver(ctx context.Context, t target, jobID string) (Delivery, error) {
	var body []byte
	if err := s.pool.QueryRow(ctx, `UPDATE control.webhook_deliveries SET next_attempt_at = now() WHERE job_id = $1
		RETURNING body`, jobID).Scan(&body); err != nil {
		return Delivery{}, fmt.Errorf("reading the notification of job %s: %w", jobID, err)
	}
	var scheduleErr error
	_, sendErr := backoff.Retry(ctx, func() (struct{}, error) {
		a := s.post(ctx, t, EventJobFinished, body)
		if err := s.recordAttempt(ctx, jobID, a); err != nil {
			return struct{}{}, backoff.Permanent(err)
		}
		if a.err != nil && !a.retryable() {
			return struct{}{}, backoff.Permanent(a.err)
		}
		return struct{}{}, a.err
	}, backoff.WithBackOff(s.opt.BackOff()), backoff.WithMaxTries(s.opt.MaxAttempts), backoff.WithMaxElapsedTime(s.opt.MaxElapsed),
		backoff.WithNotify(func(_ error, next time.Duration) {
			_, err := s.pool.Exec(ctx, `UPDATE control.webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $2)
				WHERE job_id = $1`, jobID, next.Seconds())
			if err != nil && scheduleErr == nil {
				scheduleErr = fmt.Errorf("recording the next attempt of job %s: %w", jobID, err)
			}
		}))
	if sendErr != nil && ctx.Err() == nil {
		// Given up: no attempt is due until one is asked for.
		if _, err := s.pool.Exec(ctx, `UPDATE control.webhook_deliveries SET next_attempt_at = NULL WHERE job_id = $1`, jobID); err != nil {
			sendErr = errors.Join(sendErr, fmt.Errorf("recording the end of the notification of job %s: %w", jobID, err))
		}
	}
	d, err := s.delivery(ctx, jobID)
	if sendErr != nil {
		return d, errors.Join(fmt.Errorf("%w to %s after %d attempts: %w", ErrNotDelivered, redacted(t.url), d.Attempts, sendErr), err)
	}
	return d, errors.Join(scheduleErr, err)
}

// recordAttempt counts an attempt and what it got; a 2xx marks the notification delivered.
func (s *Store) recordAttempt(ctx context.Context, jobID string, a attempt) error {
	var status *int
	if a.status != 0 {
		status = &a.status
	}
	msg := ""
	if a.err != nil {
		msg = a.err.Error()
	}
	_, err := s.pool.Exec(ctx, `UPDATE control.webhook_deliveries SET attempts = attempts + 1, last_status = $2, last_error = $3,
		delivered_at = CASE WHEN $4 THEN now() END, next_attempt_at = CASE WHEN $4 THEN NULL ELSE next_attempt_at END
		WHERE job_id = $1`, jobID, status, msg, a.err == nil)
	if err != nil {
		return fmt.Errorf("recording an attempt to notify job %s: %w", jobID, err)
	}
	return nil
}

// attempt is what one POST got: the status (0 without an answer) and, unless it was 2xx, the error.
type attempt struct {
	status int
	err    error
}

// retryable reports whether a failed attempt may succeed later: no answer, 429 or 5xx.
func (a attempt) retryable() bool {
	return a.status == 0 || a.status == http.StatusTooManyRequests || a.status >= 500
}

// post sends body once, signed, within the attempt timeout.
func (s *Store) post(ctx context.Context, t target, event string, body []byte) attempt {
	ctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return attempt{err: err}
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderEvent, event)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(t.secret, ts, body))
	resp, err := s.opt.Client.Do(req)
	if err != nil {
		return attempt{err: err} // the client's error names the URL without its password
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return attempt{status: resp.StatusCode}
	}
	// What the receiver said, for the operator: the start of its answer.
	said, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	return attempt{status: resp.StatusCode, err: fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(said)))}
}

func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}
