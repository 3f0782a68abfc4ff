package roster

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// TestConnectorPackage: the package services/connector builds from a OneRoster 1.2 REST provider's JSON
// (its golden file, services/connector/internal/oneroster/testdata/full.zip) decodes here with every row
// accepted and every file bulk: what the connector sends is what the gateway reads.
func TestConnectorPackage(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("..", "..", "..", "connector", "internal", "oneroster", "testdata", "full.zip"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodeCSVZip(body, ingest.Meta{TenantID: "d1", SourceID: "sis"}, Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rejected) != 0 {
		t.Fatalf("rejected: %+v", p.Rejected)
	}
	if len(p.Accepted) != 10 {
		t.Fatalf("accepted %d records, want 10", len(p.Accepted))
	}
	if len(p.Files) != 7 {
		t.Fatalf("files %+v", p.Files)
	}
	for _, f := range p.Files {
		if f.Mode != rosters.Bulk {
			t.Errorf("%s: mode %v, want bulk", f.Name, f.Mode)
		}
	}
}
