package schemas

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
)

// Model updates are signed with Ed25519 over the canonical Avro body of the
// record (no Confluent frame) with KeyID set and Signature empty. The body is
// canonical because the gate map is written with its keys sorted (see
// appendModelBody), so signer and verifier derive the same bytes from the
// same struct, whatever order Go iterates the map in. The frame is left out
// so that a registry renumbering its schemas does not void signatures.
//
// Keys are kept as PEM files in the forms OpenSSL writes, so operators can
// make them with either `metaids` or `openssl genpkey -algorithm ed25519`:
// a private key is PKCS #8 ("PRIVATE KEY"), a public key PKIX ("PUBLIC KEY").
// A key's id is derived from the public key (KeyID), so trusted keys need no
// separate naming.

// SignModelUpdate signs u in place: it sets u.KeyID to keyID and u.Signature
// to the Ed25519 signature of u's canonical body. keyID is normally
// KeyID(priv.Public().(ed25519.PublicKey)), the id LoadPublicKeys gives the
// matching public key. u is left unchanged on error.
func SignModelUpdate(u *ModelUpdate, keyID string, priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("sign model update: %w: private key is %d bytes, want %d", ErrBadKey, len(priv), ed25519.PrivateKeySize)
	}
	if keyID == "" {
		return fmt.Errorf("sign model update: key id is empty")
	}
	signed := *u
	signed.KeyID = keyID
	msg, err := signedBytes(&signed)
	if err != nil {
		return fmt.Errorf("sign model update %s v%d: %w", u.Name, u.Version, err)
	}
	u.KeyID = keyID
	u.Signature = ed25519.Sign(priv, msg)
	return nil
}

// VerifyModelUpdate checks that u carries a valid signature by one of keys,
// which maps key ids to public keys. It returns an error wrapping
// ErrUnsigned, ErrUnknownKey, ErrBadKey or ErrBadSignature, or ErrInvalid
// when u is not a well-formed update at all.
func VerifyModelUpdate(u *ModelUpdate, keys map[string]ed25519.PublicKey) error {
	if len(u.Signature) == 0 {
		return fmt.Errorf("verify model update %s v%d: %w", u.Name, u.Version, ErrUnsigned)
	}
	pub, ok := keys[u.KeyID]
	if !ok {
		return fmt.Errorf("verify model update %s v%d: %w %q", u.Name, u.Version, ErrUnknownKey, u.KeyID)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("verify model update %s v%d: %w: public key %q is %d bytes, want %d", u.Name, u.Version, ErrBadKey, u.KeyID, len(pub), ed25519.PublicKeySize)
	}
	msg, err := signedBytes(u)
	if err != nil {
		return fmt.Errorf("verify model update %s v%d: %w", u.Name, u.Version, err)
	}
	if !ed25519.Verify(pub, msg, u.Signature) {
		return fmt.Errorf("verify model update %s v%d: %w by key %q", u.Name, u.Version, ErrBadSignature, u.KeyID)
	}
	return nil
}

// signedBytes returns the message a signature over u covers. It compiles the
// schema on each call rather than caching a codec in a package variable:
// updates are rare, and hashing their tensors costs far more.
func signedBytes(u *ModelUpdate) ([]byte, error) {
	rc, err := newRecordCodec(SubjectModelUpdate)
	if err != nil {
		return nil, err
	}
	return appendModelBody(rc, nil, u, nil)
}

// KeyID names a public key: the first 8 bytes of its SHA-256, in hex. Signers
// put it in ModelUpdate.KeyID, and LoadPublicKeys keys its map by it.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey makes an Ed25519 key pair from rand (crypto/rand.Reader when
// nil) and returns it PEM-encoded: the public key as PKIX, the private key
// as PKCS #8.
func GenerateKey(rand io.Reader) (pubPEM, privPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal public key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), nil
}

// ParsePrivateKeyPEM parses a PEM "PRIVATE KEY" block holding a PKCS #8
// Ed25519 key.
func ParsePrivateKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	der, err := pemBlock(b, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: PKCS #8 key is %T, not ed25519", ErrBadKey, key)
	}
	return priv, nil
}

// ParsePublicKeyPEM parses a PEM "PUBLIC KEY" block holding a PKIX Ed25519
// key.
func ParsePublicKeyPEM(b []byte) (ed25519.PublicKey, error) {
	der, err := pemBlock(b, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: PKIX key is %T, not ed25519", ErrBadKey, key)
	}
	return pub, nil
}

func pemBlock(b []byte, typ string) ([]byte, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrBadKey)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("%w: PEM block is %q, want %q", ErrBadKey, block.Type, typ)
	}
	return block.Bytes, nil
}

// LoadPrivateKey reads a PEM PKCS #8 Ed25519 private key from path.
//
// path may also hold the PEM text itself (it starts with "-----BEGIN"), as
// it does when a Kubernetes Secret or a container environment passes the
// key in a variable rather than a mounted file. Such a value is never
// echoed in an error.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, name, err := keyBytes(path)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	priv, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", name, err)
	}
	return priv, nil
}

// keyBytes returns the PEM of a key setting: the value itself when it is
// inline PEM, else the file it names; name describes it for errors.
func keyBytes(v string) (b []byte, name string, err error) {
	if t := strings.TrimSpace(v); strings.HasPrefix(t, "-----BEGIN") {
		return []byte(t), "(inline PEM)", nil
	}
	b, err = os.ReadFile(v)
	return b, v, err
}

// LoadPublicKeys reads PEM PKIX Ed25519 public keys, one per file (or
// inline PEM, as LoadPrivateKey takes), and returns them keyed by KeyID,
// the form VerifyModelUpdate takes.
func LoadPublicKeys(paths ...string) (map[string]ed25519.PublicKey, error) {
	keys := make(map[string]ed25519.PublicKey, len(paths))
	for _, path := range paths {
		b, name, err := keyBytes(path)
		if err != nil {
			return nil, fmt.Errorf("load trusted key: %w", err)
		}
		pub, err := ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("load trusted key %s: %w", name, err)
		}
		keys[KeyID(pub)] = pub
	}
	return keys, nil
}
