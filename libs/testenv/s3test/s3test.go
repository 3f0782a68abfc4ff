// Package s3test serves the S3 protocol on loopback for tests: gofakes3 (github.com/johannesboyne/gofakes3)
// over an in-memory backend, behind an httptest server on 127.0.0.1 with a port the kernel picks.
//
// It runs in the test's process: nothing to install and nothing left running. What it checks is the
// S3 client path (gocloud.dev/blob/s3blob and aws-sdk-go-v2: signing, streaming uploads, copy, list
// pagination, error codes), not a real server's durability.
package s3test

import (
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Bucket is the name of the bucket New creates.
const Bucket = "archive"

// Credentials of the fake server: it accepts any, but the SDK signs every request with some.
const (
	AccessKeyID     = "s3test"
	SecretAccessKey = "s3test-secret"
	Region          = "us-east-1"
)

// New starts a server holding one empty bucket, Bucket, stops it when the test ends, and returns the
// gocloud.dev/blob URL of the bucket:
//
//	s3://archive?endpoint=http://127.0.0.1:<port>&region=us-east-1&use_path_style=true
//
// It sets the AWS environment of the test (t.Setenv): this package's credentials, and no profile, shared
// config file or instance metadata, so neither the machine's own AWS credentials nor its configuration
// reach the test. Tests that call it cannot run in parallel.
func New(t testing.TB) string {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(Bucket); err != nil {
		t.Fatalf("creating bucket %s: %v", Bucket, err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)

	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":       SecretAccessKey,
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_DEFAULT_PROFILE":         "",
		"AWS_ROLE_ARN":                "",
		"AWS_WEB_IDENTITY_TOKEN_FILE": "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_REGION":                  Region,
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
	} {
		t.Setenv(k, v)
	}
	q := url.Values{}
	q.Set("endpoint", srv.URL)
	q.Set("region", Region)
	q.Set("use_path_style", "true")
	return "s3://" + Bucket + "?" + q.Encode()
}
