// Package tenancy is what every part of the control plane shares: the control schema and the district
// template (their migrations, embedded and applied with goose), the names derived from a tenant id, and
// the errors callers branch on.
//
// The control plane itself is split by concern, each with a small store over the control schema:
//   - tenants: districts' lifecycle (create, list, delete) and their schemas;
//   - credentials: API keys and dashboard tokens, issued and checked alike;
//   - privacy: districts' privacy policies, versioned;
//   - fleet: the PostgreSQL instances and where each district is placed;
//   - audit: the append-only, hash-chained audit log;
//   - ingest: what the gateway applies per district (rate limit, hot shards);
//   - jobs: privacy jobs (erasures, exports) and their verification log;
//   - webhooks: districts' completion webhooks, told when a job finishes.
//
// Consumers define the narrow interface they need beside their own code and are handed the store that
// implements it by their service's wiring.
package tenancy

import (
	"errors"
	"fmt"
	"regexp"
)

// Errors callers branch on. They are returned wrapped; test with errors.Is.
var (
	// ErrNotFound: no such tenant, credential, policy or instance.
	ErrNotFound = errors.New("not found")
	// ErrInvalidArgument: a tenant id, source id, name or verb that breaks the rules; the message names the
	// field.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrSchemaMissing: a district's schema does not exist on its instance.
	ErrSchemaMissing = errors.New("district schema missing")
)

// Tenant statuses (control.tenants.status). Only an active tenant's credentials are accepted.
const (
	StatusActive  = "active"
	StatusDeleted = "deleted"
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

// ShadowSchemaName is the schema a rebuild of the district assembles its state in, rebuild_<id>, and
// RetiredSchemaName the one the replaced tables pass through, retired_<id>. Neither can be a district's
// schema (those start with district_).
func ShadowSchemaName(tenantID string) (string, error) {
	if err := ValidTenantID(tenantID); err != nil {
		return "", err
	}
	return "rebuild_" + tenantID, nil
}

// RetiredSchemaName: see ShadowSchemaName.
func RetiredSchemaName(tenantID string) (string, error) {
	if err := ValidTenantID(tenantID); err != nil {
		return "", err
	}
	return "retired_" + tenantID, nil
}

// MovingSchemaName is the schema a move of the district assembles its copy in on the target instance,
// moving_<id>, and MovedSchemaName the one the old copy is kept in on the instance it left, moved_<id>,
// until dropped (ctl tenant move).
func MovingSchemaName(tenantID string) (string, error) {
	if err := ValidTenantID(tenantID); err != nil {
		return "", err
	}
	return "moving_" + tenantID, nil
}

// MovedSchemaName: see MovingSchemaName.
func MovedSchemaName(tenantID string) (string, error) {
	if err := ValidTenantID(tenantID); err != nil {
		return "", err
	}
	return "moved_" + tenantID, nil
}
