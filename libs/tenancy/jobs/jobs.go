// Package jobs keeps the control plane's privacy jobs (control.privacy_jobs): erasures and exports, each a
// list of steps recorded with what each found in its store before and after, so that a job shows what
// it did and survives the death of the process that ran it.
package jobs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// Statuses of a job.
const (
	StatusQueued  = "queued" // requested through the API, waiting for a runner
	StatusRunning = "running"
	StatusDone    = "done"
	StatusFailed  = "failed"
)

// Job is one privacy job.
type Job struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"`
	TenantID    string     `json:"tenant_id"`
	Subject     string     `json:"subject,omitempty"` // the student's internal id, for a job about one student
	Params      []byte     `json:"-"`                 // what the request asked for (JSON)
	Reason      string     `json:"reason,omitempty"`
	RequestedBy string     `json:"requested_by"`
	Status      string     `json:"status"`
	Error       string     `json:"error,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	Steps       []Step     `json:"steps"`
}

// Step is one step of a job: what it found in its store before and after it ran.
type Step struct {
	Seq         int        `json:"seq"`
	Name        string     `json:"step"`
	Store       string     `json:"store"`
	FoundBefore *int64     `json:"found_before"`
	FoundAfter  *int64     `json:"found_after"`
	Detail      string     `json:"detail,omitempty"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
}

// Done reports whether the step finished.
func (s Step) Done() bool { return s.FinishedAt != nil }

// Store reads and writes jobs. Run tenancy.Migrate first.
type Store struct{ pool *pgxpool.Pool }

// New returns a Store over the control database pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Request is what a job is asked to do.
type Request struct {
	Kind, TenantID string
	Subject        string // a student's internal id, or "" for a job about the district
	Reason, By     string
	Params         []byte // JSON, or nil
	Queue          bool   // leave it queued for a runner instead of starting it
}

// Start returns the unfinished job of the request's kind and subject, creating it if there is none: a
// second request while one runs (or waits) resumes it instead of starting another. created says which.
func (s *Store) Start(ctx context.Context, r Request) (job Job, created bool, err error) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80
	status := StatusRunning
	if r.Queue {
		status = StatusQueued
	}
	params := r.Params
	if params == nil {
		params = []byte("{}")
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO control.privacy_jobs (id, kind, tenant_id, subject, reason, requested_by, status, params)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, id, r.Kind, r.TenantID, r.Subject, r.Reason, r.By, status, params)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505": // one is running already
	case err != nil:
		return Job{}, false, fmt.Errorf("creating a %s job for district %s: %w", r.Kind, r.TenantID, err)
	default:
		created = true
	}
	var jobID string
	if err := s.pool.QueryRow(ctx, `SELECT id::text FROM control.privacy_jobs
		WHERE kind = $1 AND tenant_id = $2 AND subject = $3 AND status IN ('queued', 'running')`,
		r.Kind, r.TenantID, r.Subject).Scan(&jobID); err != nil {
		return Job{}, false, fmt.Errorf("reading the unfinished %s job of district %s: %w", r.Kind, r.TenantID, err)
	}
	if !r.Queue {
		if _, err := s.pool.Exec(ctx, `UPDATE control.privacy_jobs SET status = 'running' WHERE id = $1 AND status = 'queued'`, jobID); err != nil {
			return Job{}, false, fmt.Errorf("starting job %s: %w", jobID, err)
		}
	}
	job, err = s.Job(ctx, jobID)
	return job, created, err
}

// Unfinished lists the jobs of kinds that are queued or running, oldest first: those a runner should
// run or resume (a running one whose runner died is resumed; one whose runner lives is locked, see Lock).
func (s *Store) Unfinished(ctx context.Context, kinds ...string) ([]Job, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM control.privacy_jobs WHERE status IN ('queued', 'running') AND kind = ANY($1)
		ORDER BY created_at`, kinds)
	if err != nil {
		return nil, fmt.Errorf("listing unfinished jobs: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing unfinished jobs: %w", err)
	}
	out := make([]Job, 0, len(ids))
	for _, id := range ids {
		j, err := s.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// ErrLocked: another runner is running the job.
var ErrLocked = errors.New("another runner is running the job")

// Lock makes the caller the job's one runner until release, and marks a queued job running. The lock is
// a PostgreSQL session lock: it goes with the runner's connection, so a runner that dies (SIGKILL, a
// lost node) frees its jobs for the next one at once. Another runner's lock is ErrLocked.
func (s *Store) Lock(ctx context.Context, jobID string) (release func(), err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("locking job %s: %w", jobID, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended('privacy_job:' || $1, 0))", jobID).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("locking job %s: %w", jobID, err)
	}
	if !ok {
		conn.Release()
		return nil, fmt.Errorf("job %s: %w", jobID, ErrLocked)
	}
	release = func() {
		_, err := conn.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtextextended('privacy_job:' || $1, 0))", jobID)
		if err != nil {
			_ = conn.Conn().Close(context.Background()) // closing the session frees the lock
		}
		conn.Release()
	}
	if _, err := s.pool.Exec(ctx, `UPDATE control.privacy_jobs SET status = 'running' WHERE id = $1 AND status = 'queued'`, jobID); err != nil {
		release()
		return nil, fmt.Errorf("starting job %s: %w", jobID, err)
	}
	return release, nil
}

// Job returns a job with its steps; an unknown id is tenancy.ErrNotFound.
func (s *Store) Job(ctx context.Context, id string) (Job, error) {
	var j Job
	err := s.pool.QueryRow(ctx, `SELECT id::text, kind, tenant_id, subject, params, reason, requested_by, status, error, created_at, finished_at
		FROM control.privacy_jobs WHERE id::text = $1`, id).
		Scan(&j.ID, &j.Kind, &j.TenantID, &j.Subject, &j.Params, &j.Reason, &j.RequestedBy, &j.Status, &j.Error, &j.CreatedAt, &j.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, fmt.Errorf("job %s: %w", id, tenancy.ErrNotFound)
	}
	if err != nil {
		return Job{}, fmt.Errorf("reading job %s: %w", id, err)
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, step, store, found_before, found_after, detail, started_at, finished_at
		FROM control.privacy_job_steps WHERE job_id = $1 ORDER BY seq`, j.ID)
	if err != nil {
		return Job{}, fmt.Errorf("reading the steps of job %s: %w", id, err)
	}
	j.Steps, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Step, error) {
		var st Step
		err := r.Scan(&st.Seq, &st.Name, &st.Store, &st.FoundBefore, &st.FoundAfter, &st.Detail, &st.StartedAt, &st.FinishedAt)
		return st, err
	})
	if err != nil {
		return Job{}, fmt.Errorf("reading the steps of job %s: %w", id, err)
	}
	if j.Steps == nil {
		j.Steps = []Step{}
	}
	return j, nil
}

// BeginStep records that a step starts (again, after a crash: its earlier start is replaced), with what
// its store holds before it.
func (s *Store) BeginStep(ctx context.Context, jobID string, seq int, name, store string, before int64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO control.privacy_job_steps (job_id, seq, step, store, found_before)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, seq) DO UPDATE SET started_at = now(),
		found_before = coalesce(control.privacy_job_steps.found_before, EXCLUDED.found_before)`, jobID, seq, name, store, before)
	if err != nil {
		return fmt.Errorf("recording step %s of job %s: %w", name, jobID, err)
	}
	return nil
}

// FinishStep records that a step finished, with what its store holds after it, and raises the district's
// data generation in the same statement: a step that erased data in a store is visible to the caches
// keyed by it at once, not only when the job's last step is done.
func (s *Store) FinishStep(ctx context.Context, jobID string, seq int, after int64, detail string) error {
	_, err := s.pool.Exec(ctx, `WITH step AS (
			UPDATE control.privacy_job_steps SET found_after = $3, detail = $4, finished_at = now()
			WHERE job_id = $1 AND seq = $2 RETURNING job_id)
		`+bumpGeneration+` SELECT j.tenant_id, 1 FROM step JOIN control.privacy_jobs j ON j.id = step.job_id `+onBump,
		jobID, seq, after, detail)
	if err != nil {
		return fmt.Errorf("recording the end of step %d of job %s: %w", seq, jobID, err)
	}
	return nil
}

// Finish ends a job: done, or failed with the reason. It raises the district's data generation in the
// same statement, whatever the job's kind or outcome (a failed erasure may have removed part of the data,
// and a job may end without a step).
func (s *Store) Finish(ctx context.Context, jobID, status, reason string) error {
	// A finished job keeps no SIS id (EraseStudentParams): only the internal id names its student.
	_, err := s.pool.Exec(ctx, `WITH finished AS (
			UPDATE control.privacy_jobs SET status = $2, error = $3, finished_at = now(), params = params - 'sis_id' - 'sis_ids'
			WHERE id = $1 AND status IN ('queued', 'running') RETURNING tenant_id)
		`+bumpGeneration+` SELECT tenant_id, 1 FROM finished `+onBump, jobID, status, reason)
	if err != nil {
		return fmt.Errorf("finishing job %s: %w", jobID, err)
	}
	return nil
}
