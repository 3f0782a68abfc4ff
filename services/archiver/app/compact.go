package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
)

// layerCompactor is the compaction of one layer.
type layerCompactor struct {
	layer string
	run   func(ctx context.Context, now time.Time) (archive.CompactStats, error)
}

// compactEvery compacts the closed days of each layer at every tick until ctx is done, one layer after
// the other, so that an instance never compacts a directory twice at once. Instances run their
// compactions independently: two compactions of one directory at once publish identical files, and one
// that finds an input gone leaves the run (libs/archive/compact.go). An error is logged and the next
// tick tries again.
func compactEvery(ctx context.Context, log *slog.Logger, ticks <-chan time.Time, layers []layerCompactor) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticks:
			for _, l := range layers {
				st, err := l.run(ctx, now.UTC())
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					log.Warn("compacting the archive", "layer", l.layer, "err", err)
				}
				if st.FilesWritten > 0 || st.FilesRemoved > 0 || st.Skipped > 0 {
					log.Info("compacted the archive", "layer", l.layer, "dirs", st.Dirs, "files_merged", st.FilesMerged,
						"bytes_merged", st.BytesMerged, "files_written", st.FilesWritten, "bytes_written", st.BytesWritten,
						"covered_removed", st.FilesRemoved, "runs_skipped", st.Skipped)
				}
			}
		}
	}
}
