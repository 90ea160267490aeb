package schemas

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RegistryConfig configures the Confluent Schema Registry that numbers the
// schemas. Stages embed it under the YAML key "schema-registry", so its
// flags are -schema-registry.url and so on. The zero URL means no registry:
// the FixedRegistry's ids are used.
type RegistryConfig struct {
	// URL is the registry's base URL, http or https, possibly with a path
	// prefix (-schema-registry.url). Default: "" (the fixed ids).
	URL string `yaml:"url" help:"Confluent Schema Registry base URL; empty uses the fixed schema ids 1-6"`

	// Username for HTTP basic auth, as Confluent's basic.auth.user.info
	// (-schema-registry.username). Default: "" (no auth).
	Username string `yaml:"username" help:"schema registry basic-auth user"`

	// Password for basic auth. Like the SASL password it belongs in the
	// environment (METAIDS_SCHEMA_REGISTRY_PASSWORD), the YAML file or
	// PasswordFile, not on a command line; it never prints. Default: "".
	Password Secret `yaml:"password" help:"schema registry basic-auth password (use the environment or -schema-registry.password-file)"`

	// PasswordFile holds the password, as mounted from a Kubernetes
	// secret; surrounding whitespace is trimmed
	// (-schema-registry.password-file). Default: "".
	PasswordFile string `yaml:"password-file" help:"file holding the schema registry password"`

	// CAFile is a PEM bundle of CAs to trust for an https URL instead of
	// the system pool (-schema-registry.ca). Default: "".
	CAFile string `yaml:"ca" help:"PEM CA bundle for an https schema registry (default: system pool)"`

	// Timeout bounds each request to the registry
	// (-schema-registry.timeout). Default: 10s.
	Timeout time.Duration `yaml:"timeout" help:"timeout of each schema registry request"`

	// Register registers the embedded schemas under their subjects. Turn
	// it off where metaids may only read the registry: the subjects must
	// then hold the schemas already (-schema-registry.register).
	// Default: true.
	Register bool `yaml:"register" help:"register the schemas (false: only look them up)"`
}

// DefaultRegistryConfig returns the defaults documented on each field.
func DefaultRegistryConfig() RegistryConfig {
	return RegistryConfig{Timeout: 10 * time.Second, Register: true}
}

// Enabled reports whether a registry is configured.
func (c RegistryConfig) Enabled() bool { return c.URL != "" }

// Validate reports every problem in c, each naming the flag to fix. It
// reads PasswordFile and CAFile, so that a missing mount fails at start.
func (c RegistryConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.URL == "" {
		for _, f := range []struct{ flag, v string }{
			{"-schema-registry.username", c.Username}, {"-schema-registry.password", string(c.Password)},
			{"-schema-registry.password-file", c.PasswordFile}, {"-schema-registry.ca", c.CAFile},
		} {
			if f.v != "" {
				bad("%s: set, but -schema-registry.url is empty", f.flag)
			}
		}
		return errors.Join(errs...)
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		bad("-schema-registry.url: %v", errors.Unwrap(err))
	case u.Scheme != "http" && u.Scheme != "https":
		bad("-schema-registry.url: want an http or https URL, got scheme %q", u.Scheme)
	case u.Host == "":
		bad("-schema-registry.url: %q has no host", c.URL)
	case u.User != nil:
		// A URL is logged and shown in process listings.
		bad("-schema-registry.url: holds credentials; set -schema-registry.username and METAIDS_SCHEMA_REGISTRY_PASSWORD or -schema-registry.password-file instead")
	case u.RawQuery != "" || u.Fragment != "":
		bad("-schema-registry.url: want a base URL without query or fragment, got %q", c.URL)
	case c.CAFile != "" && u.Scheme != "https":
		bad("-schema-registry.ca: set, but -schema-registry.url is not https")
	}
	if c.CAFile != "" {
		if _, err := loadCertPool(c.CAFile); err != nil {
			bad("-schema-registry.ca: %v", err)
		}
	}
	switch {
	case c.Password != "" && c.PasswordFile != "":
		bad("-schema-registry.password-file: set together with a password; use one")
	case c.Username == "" && (c.Password != "" || c.PasswordFile != ""):
		bad("-schema-registry.username: required with a password")
	case c.PasswordFile != "":
		if _, err := c.password(); err != nil {
			bad("-schema-registry.password-file: %v", err)
		}
	case c.Username != "" && c.Password == "":
		bad("-schema-registry.password: required with -schema-registry.username (set METAIDS_SCHEMA_REGISTRY_PASSWORD or -schema-registry.password-file)")
	}
	if c.Timeout <= 0 {
		bad("-schema-registry.timeout: must be positive, got %v", c.Timeout)
	}
	return errors.Join(errs...)
}

func (c RegistryConfig) password() (string, error) {
	if c.PasswordFile == "" {
		return string(c.Password), nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", err
	}
	p := strings.TrimSpace(string(b))
	if p == "" {
		return "", fmt.Errorf("%s is empty", c.PasswordFile)
	}
	return p, nil
}

func loadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificates in %s", path)
	}
	return pool, nil
}

// OpenRegistry returns the Registry cfg describes: the FixedRegistry when no
// URL is set, otherwise a connected HTTPRegistry whose subjects are
// registered (or looked up). Pass the result to NewCodecs.
func OpenRegistry(ctx context.Context, cfg RegistryConfig) (Registry, error) {
	if !cfg.Enabled() {
		return NewFixedRegistry()
	}
	r, err := NewHTTPRegistry(cfg)
	if err != nil {
		return nil, err
	}
	if err := r.Sync(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// HTTPRegistry is a Registry backed by a Confluent Schema Registry over its
// REST API. Subjects are the records' full names (RecordNameStrategy), so
// one registration serves every topic and prefix. Sync registers or looks
// up every subject once and caches the answers; ids and schemas are
// immutable in a Schema Registry, so the cache never goes stale. It is safe
// for concurrent use.
type HTTPRegistry struct {
	cfg    RegistryConfig
	base   *url.URL
	client *http.Client
	pass   string

	mu      sync.RWMutex
	ids     map[string]int32
	schemas map[int32]string
}

// NewHTTPRegistry validates cfg and returns a client; it makes no request.
func NewHTTPRegistry(cfg RegistryConfig) (*HTTPRegistry, error) {
	if !cfg.Enabled() {
		return nil, errors.New("-schema-registry.url: required for a schema registry client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, _ := url.Parse(cfg.URL) // Validate parsed it
	base.Path = strings.TrimSuffix(base.Path, "/")
	pass, err := cfg.password()
	if err != nil {
		return nil, fmt.Errorf("-schema-registry.password-file: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pool, err := loadCertPool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("-schema-registry.ca: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	return &HTTPRegistry{
		cfg:     cfg,
		base:    base,
		client:  &http.Client{Transport: tr, Timeout: cfg.Timeout},
		pass:    pass,
		ids:     map[string]int32{},
		schemas: map[int32]string{},
	}, nil
}

// Sync registers every subject's embedded schema (or, with Register off,
// looks it up) and fetches the schema under each id, so that IDFor and
// SchemaFor then answer from memory. Registering a schema that is already
// registered returns its existing id, so every replica of every stage may
// call Sync at start.
func (r *HTTPRegistry) Sync(ctx context.Context) error {
	for _, subject := range Subjects() {
		text, err := Schema(subject)
		if err != nil {
			return err
		}
		var id int32
		if r.cfg.Register {
			id, err = r.register(ctx, subject, text)
		} else {
			id, err = r.lookup(ctx, subject, text)
		}
		if err != nil {
			return err
		}
		if _, err := r.fetch(ctx, id); err != nil {
			return err
		}
		r.mu.Lock()
		r.ids[subject] = id
		r.mu.Unlock()
	}
	return nil
}

// IDFor implements Registry. A subject that Sync did not cache is looked
// up, within the configured timeout.
func (r *HTTPRegistry) IDFor(subject string) (int32, error) {
	r.mu.RLock()
	id, ok := r.ids[subject]
	r.mu.RUnlock()
	if ok {
		return id, nil
	}
	text, err := Schema(subject)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	id, err = r.lookup(ctx, subject, text)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	r.ids[subject] = id
	r.mu.Unlock()
	return id, nil
}

// SchemaFor implements Registry. An id that is not cached is fetched,
// within the configured timeout; an id the registry does not know is
// ErrUnknownSchemaID.
func (r *HTTPRegistry) SchemaFor(id int32) (string, error) {
	r.mu.RLock()
	s, ok := r.schemas[id]
	r.mu.RUnlock()
	if ok {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	return r.fetch(ctx, id)
}

// LogValue implements slog.LogValuer: the URL and user, never the password.
func (r *HTTPRegistry) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", r.base.Redacted()), slog.String("username", r.cfg.Username))
}

type schemaRequest struct {
	Schema string `json:"schema"`
}

type schemaResponse struct {
	ID     int32  `json:"id"`
	Schema string `json:"schema"`
	// SchemaType is absent for Avro, the registry's default.
	SchemaType string `json:"schemaType"`
}

func (r *HTTPRegistry) register(ctx context.Context, subject, text string) (int32, error) {
	var resp schemaResponse
	if err := r.do(ctx, http.MethodPost, schemaRequest{text}, &resp, "subjects", subject, "versions"); err != nil {
		return 0, fmt.Errorf("register schema %s: %w", subject, err)
	}
	if resp.ID <= 0 {
		return 0, fmt.Errorf("register schema %s: registry %s answered without an id", subject, r.base.Redacted())
	}
	return resp.ID, nil
}

func (r *HTTPRegistry) lookup(ctx context.Context, subject, text string) (int32, error) {
	var resp schemaResponse
	if err := r.do(ctx, http.MethodPost, schemaRequest{text}, &resp, "subjects", subject); err != nil {
		var re *RegistryError
		if errors.As(err, &re) && (re.Code == codeSubjectNotFound || re.Code == codeSchemaNotFound) {
			return 0, fmt.Errorf("%w %q in schema registry %s (register it, or set -schema-registry.register): %w", ErrUnknownSubject, subject, r.base.Redacted(), err)
		}
		return 0, fmt.Errorf("look up schema %s: %w", subject, err)
	}
	if resp.ID <= 0 {
		return 0, fmt.Errorf("look up schema %s: registry %s answered without an id", subject, r.base.Redacted())
	}
	return resp.ID, nil
}

func (r *HTTPRegistry) fetch(ctx context.Context, id int32) (string, error) {
	var resp schemaResponse
	if err := r.do(ctx, http.MethodGet, nil, &resp, "schemas", "ids", strconv.FormatInt(int64(id), 10)); err != nil {
		var re *RegistryError
		if errors.As(err, &re) && (re.Code == codeSchemaNotFound || re.Status == http.StatusNotFound) {
			return "", fmt.Errorf("%w %d in schema registry %s", ErrUnknownSchemaID, id, r.base.Redacted())
		}
		return "", fmt.Errorf("fetch schema %d: %w", id, err)
	}
	if resp.SchemaType != "" && resp.SchemaType != "AVRO" {
		return "", fmt.Errorf("fetch schema %d: registry holds a %s schema under it, want AVRO", id, resp.SchemaType)
	}
	if resp.Schema == "" {
		return "", fmt.Errorf("fetch schema %d: registry %s answered without a schema", id, r.base.Redacted())
	}
	r.mu.Lock()
	r.schemas[id] = resp.Schema
	r.mu.Unlock()
	return resp.Schema, nil
}

// Error codes of the Schema Registry's REST API used here.
const (
	codeSubjectNotFound = 40401
	codeSchemaNotFound  = 40403
)

// RegistryError is an error answer from the Schema Registry: the HTTP status
// and the registry's own error code and message.
type RegistryError struct {
	Method, URL string
	Status      int
	Code        int
	Message     string
}

func (e *RegistryError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Code != 0 {
		msg += fmt.Sprintf(" (error code %d)", e.Code)
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		msg += "; check -schema-registry.username and its password"
	}
	return msg
}

// retryable reports whether the request may succeed if sent again.
func (e *RegistryError) retryable() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests
}

const (
	registryContentType = "application/vnd.schemaregistry.v1+json"
	registryAccept      = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; q=0.9, application/json; q=0.5"
	registryAttempts    = 4
	registryMaxBody     = 16 << 20
)

// do sends a request, retrying transport errors and 5xx or 429 answers
// with a doubling backoff, and decodes a 2xx answer into out.
func (r *HTTPRegistry) do(ctx context.Context, method string, in, out any, path ...string) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	u := r.base.JoinPath(path...) // escapes each element
	backoff := 100 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		err = r.once(ctx, method, u, body, out)
		var re *RegistryError
		var ce *tls.CertificateVerificationError
		if err == nil || attempt == registryAttempts || ctx.Err() != nil ||
			(errors.As(err, &re) && !re.retryable()) || errors.As(err, &ce) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func (r *HTTPRegistry) once(ctx context.Context, method string, u *url.URL, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", registryContentType)
	}
	req.Header.Set("Accept", registryAccept)
	if r.cfg.Username != "" {
		req.SetBasicAuth(r.cfg.Username, r.pass)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("schema registry %s: %w", r.base.Redacted(), scrub(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, registryMaxBody))
	if err != nil {
		return fmt.Errorf("schema registry %s: read answer: %w", r.base.Redacted(), err)
	}
	if resp.StatusCode/100 != 2 {
		re := &RegistryError{Method: method, URL: u.Redacted(), Status: resp.StatusCode}
		var eb struct {
			Code    int    `json:"error_code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &eb) == nil {
			re.Code, re.Message = eb.Code, eb.Message
		}
		return re
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, u.Redacted(), err)
	}
	return nil
}

// scrub drops the URL from a *url.Error, which the caller names already.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Secret is a string that never prints: fmt, slog, YAML and JSON all see
// "REDACTED", so a configuration holding one can be logged whole. It is
// stream.Secret's twin, kept here so that schemas imports nothing of ours.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText implements encoding.TextMarshaler, which JSON uses.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
