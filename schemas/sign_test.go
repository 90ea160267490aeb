package schemas

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKey derives a key pair from a fixed seed, so tests are reproducible.
func testKey(seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func signedModel(t *testing.T) (ModelUpdate, map[string]ed25519.PublicKey) {
	t.Helper()
	pub, priv := testKey(1)
	u := sampleModel()
	if err := SignModelUpdate(&u, KeyID(pub), priv); err != nil {
		t.Fatalf("SignModelUpdate = %v", err)
	}
	return u, map[string]ed25519.PublicKey{KeyID(pub): pub}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	c := newCodecs(t)
	u, keys := signedModel(t)
	if len(u.Signature) != ed25519.SignatureSize {
		t.Fatalf("signature is %d bytes, want %d", len(u.Signature), ed25519.SignatureSize)
	}
	if err := VerifyModelUpdate(&u, keys); err != nil {
		t.Fatalf("VerifyModelUpdate(signed) = %v", err)
	}
	// What the scorer does: decode from the topic, then verify.
	b, err := c.AppendModelUpdate(nil, &u)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.DecodeModelUpdate(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyModelUpdate(&got, keys); err != nil {
		t.Errorf("VerifyModelUpdate(decoded) = %v", err)
	}
}

func TestSignatureIsDeterministic(t *testing.T) {
	_, priv := testKey(1)
	var first []byte
	for i := range 20 {
		u := sampleModel()
		// Rebuild the gate each time so Go's map order differs between runs.
		u.Gate = map[string]float64{}
		for j := range 32 {
			u.Gate[strings.Repeat("k", j+1)] = float64(j)
		}
		if err := SignModelUpdate(&u, "k1", priv); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = u.Signature
		} else if !bytes.Equal(u.Signature, first) {
			t.Fatalf("signature %d differs from the first: the signed bytes are not canonical", i)
		}
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name string
		edit func(*ModelUpdate)
	}{
		{"weight", func(u *ModelUpdate) { u.Tensors[0].Data[5] += 1e-6 }},
		{"tensor name", func(u *ModelUpdate) { u.Tensors[1].Name = "head.c" }},
		{"threshold", func(u *ModelUpdate) { u.Thresholds[1] = 0.1 }},
		{"anomaly threshold", func(u *ModelUpdate) { u.AnomalyThreshold = 99 }},
		{"class list", func(u *ModelUpdate) { u.Classes = append(u.Classes, "new") }},
		{"exemplar", func(u *ModelUpdate) { u.Exemplars[0].Class = 2 }},
		{"gate value", func(u *ModelUpdate) { u.Gate["recall.mirai"] = 0.2 }},
		{"gate key added", func(u *ModelUpdate) { u.Gate["extra"] = 0 }},
		{"version", func(u *ModelUpdate) { u.Version++ }},
		{"kind", func(u *ModelUpdate) { u.Kind = UpdateFull }},
		{"name", func(u *ModelUpdate) { u.Name = "other" }},
		{"signature bit", func(u *ModelUpdate) { u.Signature[0] ^= 1 }},
		{"signature cut", func(u *ModelUpdate) { u.Signature = u.Signature[:63] }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, keys := signedModel(t)
			tc.edit(&u)
			err := VerifyModelUpdate(&u, keys)
			if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), u.KeyID) {
				t.Errorf("VerifyModelUpdate(tampered) = %v, want ErrBadSignature naming key %s", err, u.KeyID)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	otherPub, otherPriv := testKey(2)
	tests := []struct {
		name    string
		edit    func(*ModelUpdate, map[string]ed25519.PublicKey)
		wantErr error
		wantMsg string
	}{
		{"unsigned", func(u *ModelUpdate, _ map[string]ed25519.PublicKey) { u.Signature = nil }, ErrUnsigned, "metaids v12"},
		{"unknown key", func(u *ModelUpdate, keys map[string]ed25519.PublicKey) { clear(keys) }, ErrUnknownKey, "unknown signing key"},
		{"key id swapped", func(u *ModelUpdate, keys map[string]ed25519.PublicKey) {
			keys[KeyID(otherPub)] = otherPub
			u.KeyID = KeyID(otherPub)
		}, ErrBadSignature, "bad signature"},
		{"signed by another key under our id", func(u *ModelUpdate, keys map[string]ed25519.PublicKey) {
			if err := SignModelUpdate(u, u.KeyID, otherPriv); err != nil {
				panic(err)
			}
		}, ErrBadSignature, "bad signature"},
		{"short public key", func(u *ModelUpdate, keys map[string]ed25519.PublicKey) { keys[u.KeyID] = keys[u.KeyID][:31] }, ErrBadKey, "31 bytes"},
		{"invalid update", func(u *ModelUpdate, _ map[string]ed25519.PublicKey) { u.Tensors[0].Rows = 7 }, ErrInvalid, "shape 7x4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, keys := signedModel(t)
			tc.edit(&u, keys)
			err := VerifyModelUpdate(&u, keys)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("VerifyModelUpdate = %v, want %v mentioning %q", err, tc.wantErr, tc.wantMsg)
			}
		})
	}
}

func TestSignRejects(t *testing.T) {
	_, priv := testKey(1)
	tests := []struct {
		name    string
		key     ed25519.PrivateKey
		keyID   string
		edit    func(*ModelUpdate)
		wantErr error
	}{
		{"short private key", priv[:32], "k", func(*ModelUpdate) {}, ErrBadKey},
		{"invalid update", priv, "k", func(u *ModelUpdate) { u.Kind = "" }, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := sampleModel()
			tc.edit(&u)
			before := u.KeyID
			if err := SignModelUpdate(&u, tc.keyID, tc.key); !errors.Is(err, tc.wantErr) {
				t.Errorf("SignModelUpdate = %v, want %v", err, tc.wantErr)
			}
			if u.KeyID != before {
				t.Errorf("SignModelUpdate changed KeyID to %q on error", u.KeyID)
			}
		})
	}
	u := sampleModel()
	if err := SignModelUpdate(&u, "", priv); err == nil {
		t.Errorf("SignModelUpdate with an empty key id = nil, want an error")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	pubPEM, privPEM, err := GenerateKey(nil)
	if err != nil {
		t.Fatalf("GenerateKey = %v", err)
	}
	pubPath, privPath := filepath.Join(dir, "k.pub"), filepath.Join(dir, "k.key")
	if err := os.WriteFile(pubPath, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(privPath, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	priv, err := LoadPrivateKey(privPath)
	if err != nil {
		t.Fatalf("LoadPrivateKey = %v", err)
	}
	keys, err := LoadPublicKeys(pubPath, "testdata/openssl-ed25519.pub")
	if err != nil {
		t.Fatalf("LoadPublicKeys = %v", err)
	}
	if len(keys) != 2 {
		t.Fatalf("LoadPublicKeys returned %d keys, want 2", len(keys))
	}
	id := KeyID(priv.Public().(ed25519.PublicKey))
	if _, ok := keys[id]; !ok {
		t.Fatalf("LoadPublicKeys has no key %s for the generated private key; has %v", id, keys)
	}
	u := sampleModel()
	if err := SignModelUpdate(&u, id, priv); err != nil {
		t.Fatal(err)
	}
	if err := VerifyModelUpdate(&u, keys); err != nil {
		t.Errorf("VerifyModelUpdate with loaded keys = %v", err)
	}

	// A pair made by OpenSSL loads and works too.
	sslPriv, err := LoadPrivateKey("testdata/openssl-ed25519.key")
	if err != nil {
		t.Fatalf("LoadPrivateKey(openssl key) = %v", err)
	}
	sslID := KeyID(sslPriv.Public().(ed25519.PublicKey))
	if err := SignModelUpdate(&u, sslID, sslPriv); err != nil {
		t.Fatal(err)
	}
	if err := VerifyModelUpdate(&u, keys); err != nil {
		t.Errorf("VerifyModelUpdate with the openssl key = %v", err)
	}
}

func TestKeyParseErrors(t *testing.T) {
	pubPEM, privPEM, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		parse func([]byte) error
		in    []byte
		want  string
	}{
		{"private: not pem", func(b []byte) error { _, err := ParsePrivateKeyPEM(b); return err }, []byte("hello"), "no PEM block"},
		{"private: public block", func(b []byte) error { _, err := ParsePrivateKeyPEM(b); return err }, pubPEM, `"PUBLIC KEY", want "PRIVATE KEY"`},
		{"public: private block", func(b []byte) error { _, err := ParsePublicKeyPEM(b); return err }, privPEM, `"PRIVATE KEY", want "PUBLIC KEY"`},
		{"public: garbage der", func(b []byte) error { _, err := ParsePublicKeyPEM(b); return err },
			[]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "bad ed25519 key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse(tc.in)
			if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parse = %v, want ErrBadKey mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := LoadPublicKeys(filepath.Join(t.TempDir(), "missing.pub")); err == nil || !strings.Contains(err.Error(), "missing.pub") {
		t.Errorf("LoadPublicKeys(missing) = %v, want an error naming the file", err)
	}
}

func TestKeyID(t *testing.T) {
	pub1, _ := testKey(1)
	pub2, _ := testKey(2)
	if got := KeyID(pub1); len(got) != 16 {
		t.Errorf("KeyID = %q, want 16 hex digits", got)
	}
	if KeyID(pub1) == KeyID(pub2) {
		t.Errorf("KeyID(pub1) == KeyID(pub2) = %s, want distinct ids", KeyID(pub1))
	}
	if KeyID(pub1) != KeyID(append(ed25519.PublicKey{}, pub1...)) {
		t.Errorf("KeyID is not a function of the key bytes")
	}
}
