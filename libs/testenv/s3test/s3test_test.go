package s3test_test

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/testenv/s3test"
)

// TestNewServesOneBucketOnLoopbackWithItsOwnCredentials: the URL points at a loopback server that lists
// the bucket, and the machine's AWS settings are replaced for the test.
func TestNewServesOneBucketOnLoopbackWithItsOwnCredentials(t *testing.T) {
	t.Setenv("AWS_PROFILE", "production")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAREALKEY")
	raw := s3test.New(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := u.Query().Get("endpoint")
	if u.Scheme != "s3" || u.Host != s3test.Bucket || !strings.HasPrefix(endpoint, "http://127.0.0.1:") || u.Query().Get("use_path_style") != "true" {
		t.Fatalf("URL %s: want s3://%s on a loopback endpoint, path style", raw, s3test.Bucket)
	}
	if os.Getenv("AWS_PROFILE") != "" || os.Getenv("AWS_ACCESS_KEY_ID") != s3test.AccessKeyID || os.Getenv("AWS_EC2_METADATA_DISABLED") != "true" {
		t.Errorf("AWS environment not replaced: profile %q, key %q", os.Getenv("AWS_PROFILE"), os.Getenv("AWS_ACCESS_KEY_ID"))
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, endpoint+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<Name>"+s3test.Bucket+"</Name>") {
		t.Fatalf("listing buckets: %d %s", resp.StatusCode, body)
	}
}
