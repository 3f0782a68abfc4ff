package app

import (
	"context"
	"fmt"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// archives
)

// openArchive opens the archive at url (a gocloud.dev/blob URL, the archiver's ARCHIVE_URL).
func openArchive(ctx context.Context, url string) (*blob.Bucket, error) {
	b, err := blob.OpenBucket(ctx, url)
	if err != nil {
		return nil, usagef("--archive.url: %w", err)
	}
	return b, nil
}

// closeArchive closes b, reporting a failure on stderr: what was read from it is already used.
func closeArchive(b *blob.Bucket, e Env) {
	if err := b.Close(); err != nil {
		fmt.Fprintf(e.Stderr, "closing the archive: %v\n", err)
	}
}
