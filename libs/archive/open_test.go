package archive_test

import (
	"errors"
	"testing"

	"github.com/edtech-analytics/platform/libs/archive"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	b, err := archive.Open(t.Context(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	bucket := archive.Blob{B: b}
	if err := bucket.WriteAll(t.Context(), "_offsets/raw/0", []byte("41")); err != nil {
		t.Fatal(err)
	}
	if got, err := bucket.ReadAll(t.Context(), "_offsets/raw/0"); err != nil || string(got) != "41" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ftp://host/archive", "/var/lib/edtech/archive", "mem://"} {
		if _, err := archive.Open(t.Context(), u); !errors.Is(err, archive.ErrScheme) {
			t.Errorf("Open(%q) = %v, want ErrScheme", u, err)
		}
	}
	for _, u := range []string{"s3://edtech-archive?region=eu-west-1", "gs://edtech-archive", "azblob://edtech-archive"} {
		if err := archive.CheckURL(u); err != nil {
			t.Errorf("CheckURL(%q) = %v", u, err)
		}
	}
}
