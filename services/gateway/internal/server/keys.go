package server

import (
	"context"
	"errors"
)

// Key is an authenticated API key: the tenant and source it speaks for and the verbs it may use.
type Key struct {
	ID       string
	TenantID string
	SourceID string
	Verbs    []string
}

// Allows reports whether the key may use verb.
func (k Key) Allows(verb string) bool {
	for _, v := range k.Verbs {
		if v == verb {
			return true
		}
	}
	return false
}

// ErrInvalidKey is returned by a KeyStore for a key that is malformed, unknown, wrong or revoked.
var ErrInvalidKey = errors.New("invalid api key")

// KeyStore resolves a presented API key.
type KeyStore interface {
	Lookup(ctx context.Context, plaintext string) (Key, error)
}
