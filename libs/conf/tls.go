package conf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
)

// ClientTLS is how a service connects over TLS to a server it uses: a CA bundle that signs the server's
// certificate (empty: the system's roots), and a client certificate and key for mutual TLS.
type ClientTLS struct {
	Enabled  bool
	CAFile   string
	CertFile string
	KeyFile  string
}

// RegisterFlags binds t to <prefix>tls, <prefix>tls-ca-file, <prefix>tls-cert-file and <prefix>tls-key-file,
// with the environment variables <envPrefix>TLS, <envPrefix>TLS_CA_FILE, ... A file given implies TLS.
func (t *ClientTLS) RegisterFlags(fs *flag.FlagSet, prefix, envPrefix, what string) {
	Bool(fs, &t.Enabled, prefix+"tls", envPrefix+"TLS", false, "connect to "+what+" over TLS")
	String(fs, &t.CAFile, prefix+"tls-ca-file", envPrefix+"TLS_CA_FILE", "", "PEM CA bundle that signs "+what+"'s certificate (empty: the system's roots); implies TLS")
	String(fs, &t.CertFile, prefix+"tls-cert-file", envPrefix+"TLS_CERT_FILE", "", "PEM client certificate for mutual TLS with "+what+"; implies TLS")
	String(fs, &t.KeyFile, prefix+"tls-key-file", envPrefix+"TLS_KEY_FILE", "", "PEM key of the client certificate")
}

// Config returns the client TLS configuration, or nil when TLS is off.
func (t ClientTLS) Config() (*tls.Config, error) {
	if !t.Enabled && t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := certPool(t.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("tls: a client certificate needs both its cert file and its key file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: loading the client certificate %s: %w", t.CertFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ServerTLS is how a service's HTTP server serves TLS: its certificate and key, and optionally a CA whose
// client certificates it requires (mutual TLS).
type ServerTLS struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

// RegisterFlags binds t to <prefix>tls-cert-file, <prefix>tls-key-file and <prefix>tls-client-ca-file, with
// <envPrefix>TLS_CERT_FILE, <envPrefix>TLS_KEY_FILE and <envPrefix>TLS_CLIENT_CA_FILE.
func (t *ServerTLS) RegisterFlags(fs *flag.FlagSet, prefix, envPrefix string) {
	String(fs, &t.CertFile, prefix+"tls-cert-file", envPrefix+"TLS_CERT_FILE", "", "PEM certificate (chain) to serve HTTPS with (empty: plain HTTP, for a TLS-terminating ingress)")
	String(fs, &t.KeyFile, prefix+"tls-key-file", envPrefix+"TLS_KEY_FILE", "", "PEM key of the certificate")
	String(fs, &t.ClientCAFile, prefix+"tls-client-ca-file", envPrefix+"TLS_CLIENT_CA_FILE", "", "PEM CA bundle; when set, clients must present a certificate it signs")
}

// Config returns the server TLS configuration, or nil to serve plain HTTP.
func (t ServerTLS) Config() (*tls.Config, error) {
	if t.CertFile == "" && t.KeyFile == "" && t.ClientCAFile == "" {
		return nil, nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("tls: serving HTTPS needs both a cert file and a key file")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: loading the server certificate %s: %w", t.CertFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.ClientCAFile != "" {
		pool, err := certPool(t.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: reading the CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", file)
	}
	return pool, nil
}
