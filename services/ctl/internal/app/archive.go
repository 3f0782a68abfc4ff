package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"gocloud.dev/blob"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/conf"
)

// noArchive is the detail of an archive step when no archive is configured.
const noArchive = "no archive configured (--archive.url, ARCHIVE_URL): skipped"

// archiveConfig is where ctl reaches the archive the archiver writes.
type archiveConfig struct{ url string }

func (c *archiveConfig) registerFlags(fs *flag.FlagSet) {
	conf.String(fs, &c.url, "archive.url", "ARCHIVE_URL", "",
		"gocloud.dev/blob URL of the archive, e.g. file:///var/lib/edtech/archive (empty: no archive; erasures record that they skipped it)")
}

// open opens the archive; with none configured it returns a nil bucket.
func (c archiveConfig) open(ctx context.Context) (archive.Bucket, func() error, error) {
	if c.url == "" {
		return nil, func() error { return nil }, nil
	}
	b, err := openArchive(ctx, c.url)
	if err != nil {
		return nil, nil, err
	}
	return archive.Blob{B: b}, b.Close, nil
}

// withArchive runs fn with the configured archive (nil when none), closing it after.
func (c archiveConfig) withArchive(ctx context.Context, fn func(archive.Bucket) error) (err error) {
	b, closeFn, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeFn(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing the archive: %w", cerr))
		}
	}()
	return fn(b)
}

// countArchive counts the district's objects in the archive (0 with no archive), reading none of them.
func (t *tenantEraser) countArchive(ctx context.Context) (int64, error) {
	if t.arch == nil {
		return 0, nil
	}
	keys, err := archive.TenantObjects(ctx, t.arch, t.tenant)
	return int64(len(keys)), err
}

// eraseArchive deletes the district's objects from the archive: its files of both layers, its erasure
// records and temporaries.
func (t *tenantEraser) eraseArchive(ctx context.Context) (string, error) {
	if t.arch == nil {
		return noArchive, nil
	}
	c, err := archive.CountTenant(ctx, t.arch, t.tenant)
	if err != nil {
		return "", err
	}
	n, err := archive.EraseTenant(ctx, t.arch, t.tenant)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d objects deleted from the raw and enriched layers (%d rows)", n, c.Rows), nil
}

// countArchive counts the student's rows in the district's enriched files (0 with no archive).
func (s *studentEraser) countArchive(ctx context.Context) (int64, error) {
	if s.arch == nil {
		return 0, nil
	}
	c, err := archive.CountStudent(ctx, s.arch, s.tenant, s.student)
	return c.Rows, err
}

// eraseArchive waits for the archiver to pass the erasure markers on every partition of enriched (its
// index in the archive), so that no record of the student is still on its way in, then rewrites the
// district's enriched files without the student's rows. Raw files are not rewritten: the student's
// identifying fields there are sealed with the key the first step shredded, and nothing unsealed in a
// raw row names the student.
func (s *studentEraser) eraseArchive(ctx context.Context) (string, error) {
	if s.arch == nil {
		return noArchive, nil
	}
	if err := s.publishMarkers(ctx); err != nil {
		return "", err
	}
	err := until(ctx, s.wait, "the archiver to pass the erasure markers", func() (bool, error) {
		for p, off := range s.markers {
			b, err := s.arch.ReadAll(ctx, archive.IndexKey("enriched", p))
			if errors.Is(err, archive.ErrNotFound) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			last, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				return false, fmt.Errorf("the archive's index of enriched partition %d: %w", p, err)
			}
			if last < off {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return "", err
	}
	res, err := archive.EraseStudent(ctx, s.arch, s.tenant, s.student)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d enriched files rewritten without the student's %d rows (%d left with no rows, kept so that their offsets "+
		"stay archived); raw files not rewritten: sealed with the shredded key", res.FilesRewritten, res.RowsRemoved, res.FilesEmptied), nil
}

// openArchive opens the archive at url (a gocloud.dev/blob URL, the archiver's ARCHIVE_URL: file://,
// s3://, gs:// or azblob://).
func openArchive(ctx context.Context, url string) (*blob.Bucket, error) {
	if err := archive.CheckURL(url); err != nil {
		return nil, usagef("--archive.url: %w", err)
	}
	b, err := archive.Open(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("--archive.url: opening the archive: %w", err)
	}
	return b, nil
}

// closeArchive closes b, reporting a failure on stderr: what was read from it is already used.
func closeArchive(b *blob.Bucket, e Env) {
	if err := b.Close(); err != nil {
		_, _ = fmt.Fprintf(e.Stderr, "closing the archive: %v\n", err) // stderr is the last place left to tell
	}
}
