package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// Headers of a notification.
const (
	HeaderEvent     = "X-Edtech-Event"
	HeaderTimestamp = "X-Edtech-Timestamp"
	HeaderSignature = "X-Edtech-Signature"
)

// ErrBadSignature: a signature that is malformed or does not match the body, timestamp and secret.
var ErrBadSignature = errors.New("webhook signature does not match")

const signaturePrefix = "sha256="

// Sign returns the X-Edtech-Signature value of body sent at timestamp (the X-Edtech-Timestamp value):
// "sha256=" and the hex HMAC-SHA256, keyed by the secret, of timestamp, ".", body.
func Sign(secret, timestamp string, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac([]byte(secret), timestamp, body))
}

// Verify checks, in constant time, that signature (the X-Edtech-Signature value) signs body at timestamp
// (the X-Edtech-Timestamp value) with secret; any mismatch is ErrBadSignature. It does not judge the
// timestamp's age: the receiver compares it with its own clock.
func Verify(secret, timestamp string, body []byte, signature string) error {
	got, err := hex.DecodeString(strings.TrimPrefix(signature, signaturePrefix))
	if err != nil || !strings.HasPrefix(signature, signaturePrefix) || !hmac.Equal(got, mac([]byte(secret), timestamp, body)) {
		return ErrBadSignature
	}
	return nil
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}
