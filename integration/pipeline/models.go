package pipeline

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// KeyPair returns the signing key at privPath and its public key's PEM file,
// creating both (mode 0600) when privPath does not exist yet. `up` and the
// demo use it so a first run needs no key ceremony; production deployments
// mount keys they made themselves.
func KeyPair(privPath string) (priv ed25519.PrivateKey, pubPath string, err error) {
	pubPath = privPath + ".pub"
	if _, statErr := os.Stat(privPath); errors.Is(statErr, os.ErrNotExist) {
		pubPEM, privPEM, err := schemas.GenerateKey(rand.Reader)
		if err != nil {
			return nil, "", err
		}
		if err := os.MkdirAll(filepath.Dir(privPath), 0o700); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(privPath, privPEM, 0o600); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(pubPath, pubPEM, 0o644); err != nil {
			return nil, "", err
		}
	}
	priv, err = schemas.LoadPrivateKey(privPath)
	if err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(pubPath); err != nil {
		return nil, "", fmt.Errorf("public key %s: %w", pubPath, err)
	}
	return priv, pubPath, nil
}

// TopicEmpty reports whether partition 0 of topic holds no record.
func TopicEmpty(ctx context.Context, kcfg stream.Config, topic string) (bool, error) {
	d, err := kcfg.Dialer()
	if err != nil {
		return false, err
	}
	conn, err := d.DialLeader(ctx, "tcp", kcfg.Brokers[0], topic, 0)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", topic, err)
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return false, fmt.Errorf("read %s offsets: %w", topic, err)
	}
	return last <= first, nil
}

// PublishModel signs m as a full update and produces it to the models
// topic, keyed by the model's name so compaction keeps the newest.
func PublishModel(ctx context.Context, kcfg stream.Config, m *model.Model, priv ed25519.PrivateKey) (int64, error) {
	if m.Version == 0 {
		m.Version = 1
	}
	if m.CreatedNs == 0 {
		m.CreatedNs = time.Now().UnixNano()
	}
	u, err := m.Update(schemas.UpdateFull)
	if err != nil {
		return 0, err
	}
	pub := priv.Public().(ed25519.PublicKey)
	if err := schemas.SignModelUpdate(u, schemas.KeyID(pub), priv); err != nil {
		return 0, err
	}
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		return 0, err
	}
	b, err := codecs.AppendModelUpdate(nil, u)
	if err != nil {
		return 0, err
	}
	p, err := stream.NewProducer(kcfg, nil, nil)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	topic := schemas.Topics{Prefix: kcfg.TopicPrefix}.Models()
	if err := p.Produce(ctx, kafka.Message{Topic: topic, Key: []byte(m.Name), Value: b}); err != nil {
		return 0, fmt.Errorf("publish model %s v%d: %w", m.Name, m.Version, err)
	}
	return m.Version, nil
}

// LoopbackAddr checks that addr is a loopback host:port, for the embedded
// broker, which must never listen on the network.
func LoopbackAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not a loopback address", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}
