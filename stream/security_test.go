package stream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestSASL(t *testing.T) {
	for _, mech := range []string{MechanismPLAIN, MechanismSCRAMSHA256, MechanismSCRAMSHA512} {
		t.Run(mech, func(t *testing.T) {
			e := startBroker(t, EmbeddedConfig{Users: []SASLUser{{Mechanism: mech, Username: "stage", Password: "right"}}})

			t.Run("right credentials", func(t *testing.T) {
				cfg := fastConfig(e)
				cfg.SASL = SASLConfig{Mechanism: mech, Username: "stage", Password: "right"}
				roundTripOne(t, cfg)
			})
			t.Run("wrong credentials", func(t *testing.T) {
				cfg := fastConfig(e)
				cfg.SASL = SASLConfig{Mechanism: mech, Username: "stage", Password: "wrong"}
				wantFailsFast(t, cfg, func(err error) bool { return errors.Is(err, kafka.SASLAuthenticationFailed) })
			})
		})
	}
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
		MinVersion:   tls.VersionTLS12,
	}
	e := startBroker(t, EmbeddedConfig{TLS: serverTLS})

	t.Run("trusted CA and client certificate", func(t *testing.T) {
		cfg := fastConfig(e)
		cfg.TLS = TLSConfig{Enabled: true, CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Validate() = %v", err)
		}
		roundTripOne(t, cfg)
	})
	t.Run("untrusted broker", func(t *testing.T) {
		cfg := fastConfig(e)
		// The system pool does not know the test CA.
		cfg.TLS = TLSConfig{Enabled: true, CertFile: pki.clientCert, KeyFile: pki.clientKey}
		wantFailsFast(t, cfg, func(err error) bool {
			var uae x509.UnknownAuthorityError
			return errors.As(err, &uae) || strings.Contains(err.Error(), "certificate signed by unknown authority")
		})
	})
}

// roundTripOne creates a topic, produces one record and consumes it with cfg.
func roundTripOne(t *testing.T, cfg Config) {
	t.Helper()
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	p := newProducer(t, cfg, nil)
	produceN(t, p, topic, "m", 1)
	var got collector
	r := startConsumer(t, cfg, ConsumerConfig{Group: t.Name(), Topics: []string{topic}}, nil, got.handle)
	eventually(t, 10*time.Second, wantCount(&got, 1))
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

// wantFailsFast checks that topic setup, producing and consuming with cfg
// each fail within a few seconds with an error that is recognised.
func wantFailsFast(t *testing.T, cfg Config, recognise func(error) bool) {
	t.Helper()
	const limit = 5 * time.Second
	topic := topicName(t, "in")
	check := func(what string, start time.Time, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s succeeded, want an error", what)
		}
		t.Logf("%s failed in %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		if !recognise(err) {
			t.Errorf("%s = %v, not the error expected", what, err)
		}
		if d := time.Since(start); d > limit {
			t.Errorf("%s took %v to fail, want under %v", what, d, limit)
		}
	}

	start := time.Now()
	check("EnsureTopics", start, EnsureTopics(t.Context(), cfg, []TopicSpec{{Name: topic, Partitions: 1}}))

	p := newProducer(t, cfg, nil)
	start = time.Now()
	check("Produce", start, p.Produce(t.Context(), kafka.Message{Topic: topic, Value: []byte("x")}))

	c, err := NewConsumer(cfg, ConsumerConfig{Group: t.Name(), Topics: []string{topic}}, testLog(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	check("Consumer.Run", start, c.Run(t.Context(), func(context.Context, []kafka.Message) error { return nil }))
}

type testPKI struct {
	pool                               *x509.CertPool
	server                             tls.Certificate
	caFile, clientCert, clientKey, dir string
}

// newTestPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all ECDSA P-256, valid for an hour.
func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey := mustKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "metaids test CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key := mustKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Minute),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	serverDER, serverKey := leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	clientDER, clientKey := leaf(3, "metaids-stage", x509.ExtKeyUsageClientAuth)

	pki := testPKI{pool: x509.NewCertPool(), dir: dir}
	pki.pool.AddCert(ca)
	pki.server = tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}
	pki.caFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	pki.clientCert = writePEM(t, dir, "client.pem", "CERTIFICATE", clientDER)
	keyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	pki.clientKey = writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", keyDER)
	return pki
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
