package app

import (
	"context"
	"fmt"
	"io"
)

// envHoldStep is a test hook, never set in production: it names a job step in which the runner stops,
// so that a test can kill it there (SIGKILL) and check that the next runner resumes the job.
const envHoldStep = "EDTECH_CTL_TEST_HOLD_STEP"

// holdStep is the test hook of envHoldStep, called after a step has begun: when the variable names the
// step, it prints "holding step <name>" to stderr and waits, without running the step, until stdin
// closes (its test has gone) or ctx ends, then fails the run. Otherwise it returns at once.
func holdStep(ctx context.Context, e Env, step string) error {
	if e.Getenv == nil || e.Getenv(envHoldStep) != step {
		return nil
	}
	if _, err := fmt.Fprintf(e.Stderr, "holding step %s\n", step); err != nil {
		return err
	}
	closed := make(chan struct{})
	if e.Stdin != nil {
		go func() {
			_, _ = io.Copy(io.Discard, e.Stdin)
			close(closed)
		}()
	}
	select {
	case <-closed:
	case <-ctx.Done():
	}
	return fmt.Errorf("step %s held by %s and released without running", step, envHoldStep)
}
