package rebuild

import "github.com/edtech-analytics/platform/libs/records"

// LoseRecords makes the replay lose the records drop selects before they are applied or counted, as a
// replay bug would; the verification against the log must catch it.
func LoseRecords(drop func(offset int64, ev *records.EnrichedEvent) bool) Option {
	return func(o *options) { o.drop = drop }
}

// MoveHook calls hook at each named point of a move (MovePoints).
func MoveHook(hook func(point string)) Option {
	return func(o *options) { o.hook = hook }
}
