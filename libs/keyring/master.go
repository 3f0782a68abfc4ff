package keyring

import (
	"bufio"
	"context"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MasterKeys is the root of the hierarchy: it wraps district secrets and KEKs and never lets its keys
// into the database. A cloud KMS or Vault transit satisfies it as well as the local keys do: Wrap is an
// encrypt call, Unwrap a decrypt call, each naming the key by id.
type MasterKeys interface {
	// Current is the id of the key new wraps use; Rotate re-wraps everything else under it.
	Current() string
	// Wrap encrypts plaintext under the key id, bound to aad.
	Wrap(ctx context.Context, id string, plaintext, aad []byte) ([]byte, error)
	// Unwrap reverses Wrap; a wrong key id, aad or a changed ciphertext is an error.
	Unwrap(ctx context.Context, id string, wrapped, aad []byte) ([]byte, error)
}

// LocalKeys are master keys held by the process: 32-byte AES keys, each named by an id.
type LocalKeys struct {
	current string
	keys    map[string]cipher.AEAD
}

// ParseLocalKeys reads master keys written as "id:base64key" entries separated by commas or newlines,
// the current key first. Older keys stay listed after a master rotation until nothing is wrapped by
// them. Blank lines and lines starting with # are skipped.
func ParseLocalKeys(spec string) (*LocalKeys, error) {
	lk := &LocalKeys{keys: map[string]cipher.AEAD{}}
	sc := bufio.NewScanner(strings.NewReader(strings.ReplaceAll(spec, ",", "\n")))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, encoded, ok := strings.Cut(line, ":")
		id = strings.TrimSpace(id)
		if !ok || id == "" {
			return nil, fmt.Errorf("master key %d: want id:base64key", n)
		}
		if _, dup := lk.keys[id]; dup {
			return nil, fmt.Errorf("master key %q: listed twice", id)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
		if err != nil {
			return nil, fmt.Errorf("master key %q: not base64: %w", id, err)
		}
		if len(raw) != keySize {
			return nil, fmt.Errorf("master key %q: %d bytes, want %d", id, len(raw), keySize)
		}
		aead, err := newAEAD(raw)
		if err != nil {
			return nil, fmt.Errorf("master key %q: %w", id, err)
		}
		lk.keys[id] = aead
		if lk.current == "" {
			lk.current = id
		}
	}
	if lk.current == "" {
		return nil, errors.New("no master key given")
	}
	return lk, nil
}

// LoadLocalKeys reads master keys from spec (the MASTER_KEYS form of ParseLocalKeys) or, when spec is
// empty, from the file at path.
func LoadLocalKeys(spec, path string) (*LocalKeys, error) {
	switch {
	case spec != "" && path != "":
		return nil, errors.New("master keys: give the keys or a key file, not both")
	case spec != "":
		return ParseLocalKeys(spec)
	case path == "":
		return nil, errors.New("master keys: none configured (give the keys or a key file)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	lk, err := ParseLocalKeys(string(b))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return lk, nil
}

// NewLocalKeyLine returns a fresh "id:base64key" entry for a key file or MASTER_KEYS.
func NewLocalKeyLine(id string) string {
	return id + ":" + base64.StdEncoding.EncodeToString(randomKey())
}

// Current implements MasterKeys.
func (lk *LocalKeys) Current() string { return lk.current }

// Wrap implements MasterKeys.
func (lk *LocalKeys) Wrap(_ context.Context, id string, plaintext, aad []byte) ([]byte, error) {
	aead, ok := lk.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: master key %q", ErrUnknownKey, id)
	}
	return aead.Seal(nil, nil, plaintext, aad), nil
}

// Unwrap implements MasterKeys.
func (lk *LocalKeys) Unwrap(_ context.Context, id string, wrapped, aad []byte) ([]byte, error) {
	aead, ok := lk.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: master key %q", ErrUnknownKey, id)
	}
	pt, err := aead.Open(nil, nil, wrapped, aad)
	if err != nil {
		return nil, fmt.Errorf("unwrapping with master key %q: %w", id, err)
	}
	return pt, nil
}
