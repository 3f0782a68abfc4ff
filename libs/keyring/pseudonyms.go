package keyring

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// Pseudonym is the district-keyed HMAC of a value (an internal id, or a field the policy pseudonymises):
// stable within a district, unjoinable across districts (each has its own key).
func Pseudonym(key []byte, value string) string {
	return NewPseudonymizer(key).Pseudonym(value)
}

// Pseudonymizer computes one district's pseudonyms, reusing HMAC states (a pseudonym is on the hot path
// of every record a policy pseudonymises). It is safe for concurrent use.
type Pseudonymizer struct {
	pool sync.Pool // hash.Hash keyed with the district's key
}

// NewPseudonymizer returns a Pseudonymizer for a district's key.
func NewPseudonymizer(key []byte) *Pseudonymizer {
	k := bytes.Clone(key)
	return &Pseudonymizer{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}
}

// Pseudonym returns "p_" and the hex of the first 16 bytes of the HMAC-SHA256 of value.
func (p *Pseudonymizer) Pseudonym(value string) string {
	m := p.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(value))
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	p.pool.Put(m)
	var out [2 + 32]byte
	out[0], out[1] = 'p', '_'
	hex.Encode(out[2:], sum[:16])
	return string(out[:])
}

// ErasedPrefix marks an identifier replaced by its keyed hash when its student was erased.
const ErasedPrefix = "erased:"

// ErasedSIS is what replaces a SIS id in an erased student's identity: its keyed hash, which still
// finds the student (to suppress its records) but cannot be read back.
func ErasedSIS(key []byte, source, sis string) string {
	return ErasedPrefix + Pseudonym(key, "sis\x00"+source+"\x00"+sis)[2:]
}

// ErasedMatch is ErasedSIS for a student's match key.
func ErasedMatch(key []byte, match string) string {
	return ErasedPrefix + Pseudonym(key, "match\x00"+match)[2:]
}
