// Package tenancy is the control-plane data layer: the control schema (tenants, API keys, consumer offsets,
// the fleet of PostgreSQL instances and where each district is placed) and one schema per district
// (tenant), district_<id>, built from a versioned template on the district's instance. Both are migrated
// with goose from SQL files embedded in the binary.
package tenancy

import (
	"errors"
	"fmt"
	"regexp"
)

// Errors callers branch on. They are returned wrapped; test with errors.Is.
var (
	// ErrNotFound: no such tenant or API key.
	ErrNotFound = errors.New("not found")
	// ErrTenantExists: CreateTenant was given an id that is already taken.
	ErrTenantExists = errors.New("tenant already exists")
	// ErrInvalidKey: an API key that is malformed, unknown, wrong, revoked or of an inactive tenant. It
	// never says which.
	ErrInvalidKey = errors.New("invalid api key")
	// ErrInvalidArgument: a tenant id, source id, name or verb that breaks the rules; the message names the
	// field.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrSchemaMissing: a district's schema does not exist on its instance.
	ErrSchemaMissing = errors.New("district schema missing")
)

// Tenant statuses.
const (
	StatusActive = "active"
)

// ControlSchema holds the control-plane tables.
const ControlSchema = "control"

var (
	tenantIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,47}$`)
	sourceIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`)
)

// ValidTenantID checks that id is a slug: 1 to 48 characters of a-z, 0-9 and _, not starting with _. Such
// an id is safe in schema names, topic keys and file names.
func ValidTenantID(id string) error {
	if !tenantIDPattern.MatchString(id) {
		return fmt.Errorf("%w: tenant id %q: must be 1-48 characters of a-z, 0-9 and _, starting with a letter or digit",
			ErrInvalidArgument, id)
	}
	return nil
}

// ValidSourceID checks a source id (the integration or SIS a key writes for): 1 to 64 characters of
// letters, digits and _ . : -, starting with a letter or digit.
func ValidSourceID(id string) error {
	if !sourceIDPattern.MatchString(id) {
		return fmt.Errorf("%w: source id %q: must be 1-64 characters of letters, digits and _ . : -, starting with a letter or digit",
			ErrInvalidArgument, id)
	}
	return nil
}

// SchemaName returns the name of a district's schema, district_<id>. It is a plain identifier, but quote
// it anyway (pgx.Identifier) wherever it goes into SQL.
func SchemaName(tenantID string) (string, error) {
	if err := ValidTenantID(tenantID); err != nil {
		return "", err
	}
	return "district_" + tenantID, nil
}
