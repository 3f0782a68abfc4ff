package server

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/semaphore"
)

// Errors of a roster request's memory; the handler answers them 413 and 503.
var (
	// errRequestMemory is a request that needs more than one request may hold.
	errRequestMemory = errors.New("request over its memory bound")
	// errBudgetBusy is a request the gateway's roster budget cannot hold now, because other requests hold
	// it: it would fit later.
	errBudgetBusy = errors.New("roster memory in use by other requests")
)

// rosterBudget is the memory all roster requests of the gateway may hold together while they are
// decoded, encoded and produced. Requests never wait for it: a request it cannot hold now is refused
// (503 with Retry-After), so nothing queues behind a slow one.
type rosterBudget struct {
	sem        *semaphore.Weighted
	size       int64
	perRequest int64
}

func newRosterBudget(size, perRequest int64) *rosterBudget {
	return &rosterBudget{sem: semaphore.NewWeighted(size), size: size, perRequest: perRequest}
}

// growStep is the least a reservation takes from the budget at a time, so that a request charging
// record by record does not touch the shared semaphore for each.
const growStep = 1 << 20

// reserve starts a request's reservation, empty; release returns what it took.
func (b *rosterBudget) reserve() *reservation { return &reservation{b: b} }

// reservation is what one request holds of the budget. It implements roster.Memory: the decoder
// charges it before holding memory, and so does the server for the body and the encoded records.
type reservation struct {
	b    *rosterBudget
	mu   sync.Mutex
	used int64 // charged
	held int64 // taken from the budget, at least used
}

func (r *reservation) Grow(n int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	used := r.used + n
	if used > r.b.perRequest {
		return fmt.Errorf("%w: needs more than %d bytes of memory, at most %d a request", errRequestMemory, r.b.perRequest, r.b.perRequest)
	}
	if used > r.held {
		take := min(max(used-r.held, growStep), r.b.perRequest-r.held)
		if !r.b.sem.TryAcquire(take) {
			return fmt.Errorf("%w: needs %d bytes of memory; the gateway's %d bytes for roster requests are in use", errBudgetBusy, used, r.b.size)
		}
		r.held += take
	}
	r.used = used
	return nil
}

// shrink gives back n bytes charged before (memory let go); the budget keeps what the request took, for
// what it charges next.
func (r *reservation) shrink(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.used = max(0, r.used-n)
}

func (r *reservation) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b.sem.Release(r.held)
	r.held, r.used = 0, 0
}
