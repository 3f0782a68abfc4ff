package archive

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/blob/s3blob"
)

// Schemes are the URL schemes Open accepts: the gocloud.dev/blob drivers linked into this package.
var Schemes = []string{fileblob.Scheme, s3blob.Scheme, gcsblob.Scheme, azureblob.Scheme}

// ErrScheme is a URL whose scheme is not one of Schemes.
var ErrScheme = errors.New("not a supported archive URL")

// CheckURL reports whether Open can open rawURL, without opening it: it must be a URL with one of
// Schemes.
func CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("%w: want <scheme>://..., scheme one of %s", ErrScheme, strings.Join(Schemes, ", "))
	}
	if !slices.Contains(Schemes, u.Scheme) {
		return fmt.Errorf("%w: scheme %q, want one of %s", ErrScheme, u.Scheme, strings.Join(Schemes, ", "))
	}
	return nil
}

// Open opens the bucket of an archive URL (a gocloud.dev/blob URL), e.g.
//
//	file:///var/lib/edtech/archive
//	s3://edtech-archive?region=eu-west-1
//	s3://edtech-archive?endpoint=http://minio:9000&use_path_style=true&region=us-east-1
//	gs://edtech-archive
//	azblob://edtech-archive
//
// Credentials come from each SDK's usual sources (for S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
// shared config files, or the workload's role). The caller closes the bucket; wrap it in Blob for a
// Bucket.
func Open(ctx context.Context, rawURL string) (*blob.Bucket, error) {
	if err := CheckURL(rawURL); err != nil {
		return nil, err
	}
	b, err := blob.OpenBucket(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("opening archive bucket: %w", err)
	}
	return b, nil
}
