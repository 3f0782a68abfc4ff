package app

import (
	"context"
	"fmt"

	"github.com/edtech-analytics/platform/libs/archive"
	"gocloud.dev/blob"
)

// openArchive opens the archive at url (a gocloud.dev/blob URL, the archiver's ARCHIVE_URL: file://,
// s3://, gs:// or azblob://).
func openArchive(ctx context.Context, url string) (*blob.Bucket, error) {
	if err := archive.CheckURL(url); err != nil {
		return nil, usagef("--archive.url: %w", err)
	}
	b, err := archive.Open(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("--archive.url: %w", err)
	}
	return b, nil
}

// closeArchive closes b, reporting a failure on stderr: what was read from it is already used.
func closeArchive(b *blob.Bucket, e Env) {
	if err := b.Close(); err != nil {
		fmt.Fprintf(e.Stderr, "closing the archive: %v\n", err)
	}
}
