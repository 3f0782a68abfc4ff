package tenancy

import (
	"errors"
	"strings"
	"testing"
)

func TestValidTenantID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"springfield", true},
		{"d42", true},
		{"0", true},
		{"north_valley_usd", true},
		{strings.Repeat("a", 48), true},
		{strings.Repeat("a", 49), false},
		{"", false},
		{"../x", false},
		{"A", false},
		{"a;drop", false},
		{"a b", false},
		{"_a", false},
		{"a-b", false},
		{`a"b`, false},
		{"é", false},
		{"a\n", false},
	}
	for _, tt := range tests {
		err := ValidTenantID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidTenantID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "tenant id")) {
			t.Errorf("ValidTenantID(%q) error %q should wrap ErrInvalidArgument and name the tenant id", tt.id, err)
		}
		schema, serr := SchemaName(tt.id)
		if (serr == nil) != tt.ok {
			t.Errorf("SchemaName(%q) = %v, want ok=%v", tt.id, serr, tt.ok)
		}
		if tt.ok && (schema != "district_"+tt.id || len(schema) > 63) {
			t.Errorf("SchemaName(%q) = %q", tt.id, schema)
		}
	}
}
