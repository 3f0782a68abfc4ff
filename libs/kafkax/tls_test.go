package kafkax_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/conf/conftest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
)

// TestMutualTLSToKafka: a broker that requires client certificates signed by the test CA takes a record
// from a client configured with the CA and a client certificate (KAFKA_TLS_CA_FILE, KAFKA_TLS_CERT_FILE,
// KAFKA_TLS_KEY_FILE), and refuses a client without a certificate.
func TestMutualTLSToKafka(t *testing.T) {
	pki := conftest.New(t)
	serverTLS, err := conf.ServerTLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, ClientCAFile: pki.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	_, cfg := kafkatest.New(t, kfake.TLS(serverTLS), kfake.SeedTopics(1, "tls-test"))
	produce := func(c conf.ClientTLS) error {
		t.Helper()
		cfg.TLS = c
		cl, err := kafkax.NewClient(cfg, kafkax.Deps{}, "", kgo.RequestRetries(0), kgo.RecordRetries(1), kgo.RecordDeliveryTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // bounds a refused handshake's retries
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: "tls-test", Value: []byte("x")}).FirstErr()
	}
	if err := produce(conf.ClientTLS{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}); err != nil {
		t.Fatalf("a client with the CA and a certificate: %v", err)
	}
	if err := produce(conf.ClientTLS{CAFile: pki.CA}); err == nil {
		t.Fatal("a client without a certificate produced")
	}
}
