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

// CredentialEnv are the environment variables the linked drivers' SDKs read for credentials and
// endpoints, beyond what an archive URL's query says: a deployment may set them for the archiver, which
// does not read them itself. Secret marks those whose values are secrets.
var CredentialEnv = []struct {
	Name   string
	Secret bool
}{
	{"AWS_ACCESS_KEY_ID", false}, {"AWS_SECRET_ACCESS_KEY", true}, {"AWS_SESSION_TOKEN", true}, {"AWS_REGION", false},
	{"AWS_ROLE_ARN", false}, {"AWS_WEB_IDENTITY_TOKEN_FILE", false}, // IAM roles for service accounts (EKS)
	{"GOOGLE_APPLICATION_CREDENTIALS", false},
	{"AZURE_STORAGE_ACCOUNT", false}, {"AZURE_STORAGE_KEY", true}, {"AZURE_STORAGE_SAS_TOKEN", true},
	{"AZURE_STORAGE_CONNECTION_STRING", true},
}

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
//
// A file:// archive is opened with FileOptions' settings unless its URL sets them.
func Open(ctx context.Context, rawURL string) (*blob.Bucket, error) {
	if err := CheckURL(rawURL); err != nil {
		return nil, err
	}
	if u, err := url.Parse(rawURL); err == nil && u.Scheme == fileblob.Scheme {
		q := u.Query()
		for k, v := range fileParams {
			if !q.Has(k) {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
		rawURL = u.String()
	}
	b, err := blob.OpenBucket(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("opening archive bucket: %w", err)
	}
	return b, nil
}

// fileParams are the file driver's settings of an archive, as URL parameters (FileOptions):
//   - metadata=skip: no "<key>.attrs" file beside each object. The driver writes it in place, so a process
//     killed while writing one leaves it empty, and every later read of the object fails (EOF). The archive
//     keeps what it needs in the Parquet files themselves.
//   - no_tmp_dir: an object is written next to its key and renamed into place, not written in os.TempDir,
//     which is on another file system than a mounted archive volume (where a rename cannot cross).
var fileParams = map[string]string{"metadata": "skip", "no_tmp_dir": "true"}

// FileOptions are the file driver's settings of an archive (fileParams), for fileblob.OpenBucket.
func FileOptions() *fileblob.Options {
	return &fileblob.Options{Metadata: fileblob.MetadataDontWrite, NoTempDir: true}
}
