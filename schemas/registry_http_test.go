package schemas

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/metaids/metaids/schemas/schematest"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func srConfig(url string) RegistryConfig {
	cfg := DefaultRegistryConfig()
	cfg.URL = url
	cfg.Timeout = 2 * time.Second
	return cfg
}

func TestHTTPRegistryRegistersAndFrames(t *testing.T) {
	fake := schematest.NewRegistry()
	srv := schematest.Start(t, fake)
	reg, err := OpenRegistry(t.Context(), srConfig(srv.URL+"/"))
	if err != nil {
		t.Fatalf("OpenRegistry = %v", err)
	}
	if got := fake.Count("POST subjects"); got != len(Subjects()) {
		t.Errorf("registrations = %d, want %d", got, len(Subjects()))
	}
	c, err := NewCodecs(reg)
	if err != nil {
		t.Fatalf("NewCodecs(HTTPRegistry) = %v", err)
	}
	for _, subject := range Subjects() {
		text, _ := Schema(subject)
		want := fakeID(fake, text)
		if got, err := c.ID(subject); err != nil || got != want {
			t.Errorf("ID(%s) = %d, %v, want the registry's %d", subject, got, err, want)
		}
	}
	f := sampleFlow()
	b, err := c.AppendFlow(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	if id, _, _ := SplitFrame(b); id != fakeID(fake, mustSchema(t, SubjectFlow)) {
		t.Errorf("frame id = %d, want the registry's id %d", id, fakeID(fake, mustSchema(t, SubjectFlow)))
	}

	// A second process, that may only read the registry, finds the same ids
	// without registering anything and decodes what the first wrote.
	cfg := srConfig(srv.URL)
	cfg.Register = false
	reader, err := OpenRegistry(t.Context(), cfg)
	if err != nil {
		t.Fatalf("OpenRegistry(register=false) = %v", err)
	}
	if got := fake.Count("POST subjects"); got != 2*len(Subjects()) {
		t.Errorf("requests after lookup = %d, want %d (one lookup per subject)", got, 2*len(Subjects()))
	}
	if n := fake.Len(); n != len(Subjects()) {
		t.Errorf("registry holds %d schemas after a lookup-only client, want %d", n, len(Subjects()))
	}
	rc, err := NewCodecs(reader)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rc.DecodeFlow(b); err != nil || got != f {
		t.Errorf("DecodeFlow(record framed with registry id) = %+v, %v, want %+v", got, err, f)
	}
	// A record framed with the fixed table's id is not one the registry
	// numbered.
	fb, _ := newCodecs(t).AppendFlow(nil, &f)
	if _, err := rc.DecodeFlow(fb); !errors.Is(err, ErrUnknownSchemaID) {
		t.Errorf("DecodeFlow(fixed id 1) = %v, want ErrUnknownSchemaID", err)
	}
	if _, err := reader.SchemaFor(99999); !errors.Is(err, ErrUnknownSchemaID) || !strings.Contains(err.Error(), "99999") {
		t.Errorf("SchemaFor(99999) = %v, want ErrUnknownSchemaID naming 99999", err)
	}
	// Sync again, as every restarted replica does: same ids, no new schema.
	if _, err := OpenRegistry(t.Context(), srConfig(srv.URL)); err != nil {
		t.Fatal(err)
	}
	if n := fake.Len(); n != len(Subjects()) {
		t.Errorf("registry holds %d schemas after re-registering, want %d", n, len(Subjects()))
	}
}

func mustSchema(t *testing.T, subject string) string {
	t.Helper()
	s, err := Schema(subject)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHTTPRegistryForeignRegistration checks a registry that other
// producers filled first: a lookup-only client names the missing subject,
// and a reformatted copy of a schema under the subject does not stand in
// for the embedded text's own id.
func TestHTTPRegistryForeignRegistration(t *testing.T) {
	fake := schematest.NewRegistry()
	fake.SetNextID(5000)
	redoc := strings.Replace(mustSchema(t, SubjectAlert), "\n", "  \n", -1)
	fake.Put(SubjectAlert, redoc)
	srv := schematest.Start(t, fake)
	cfg := srConfig(srv.URL)
	cfg.Register = false
	_, err := OpenRegistry(t.Context(), cfg)
	if !errors.Is(err, ErrUnknownSubject) || !strings.Contains(err.Error(), SubjectFlow) || !strings.Contains(err.Error(), "-schema-registry.register") {
		t.Fatalf("OpenRegistry(lookup only, Flow missing) = %v, want ErrUnknownSubject naming %s and the flag", err, SubjectFlow)
	}
	// The registry's copy of Alert is a reformatted one, under another id:
	// the codecs take the id the lookup of our text returns.
	reg, err := OpenRegistry(t.Context(), srConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCodecs(reg)
	if err != nil {
		t.Fatalf("NewCodecs = %v", err)
	}
	if id, _ := c.ID(SubjectAlert); id == 5000 || id != fakeID(fake, mustSchema(t, SubjectAlert)) {
		t.Errorf("Alert id = %d, want the id of the embedded text %d", id, fakeID(fake, mustSchema(t, SubjectAlert)))
	}
}

func TestHTTPRegistryErrors(t *testing.T) {
	t.Run("incompatible", func(t *testing.T) {
		fake := schematest.NewRegistry()
		fake.Compatible = func(string, string, string) bool { return false }
		fake.Put(SubjectLabel, `{"type":"record","name":"Label","namespace":"io.metaids","fields":[{"name":"x","type":"long"}]}`)
		srv := schematest.Start(t, fake)
		_, err := OpenRegistry(t.Context(), srConfig(srv.URL))
		var re *RegistryError
		if !errors.As(err, &re) || re.Status != http.StatusConflict || !strings.Contains(err.Error(), "register schema "+SubjectLabel) || !strings.Contains(err.Error(), "incompatible") {
			t.Fatalf("OpenRegistry(incompatible Label) = %v, want a 409 naming %s", err, SubjectLabel)
		}
	})
	t.Run("retries", func(t *testing.T) {
		fake := schematest.NewRegistry()
		fake.FailNext.Store(3)
		srv := schematest.Start(t, fake)
		if _, err := OpenRegistry(t.Context(), srConfig(srv.URL)); err != nil {
			t.Fatalf("OpenRegistry after 3 answers of 503 = %v, want success on retry", err)
		}
	})
	t.Run("gives up", func(t *testing.T) {
		fake := schematest.NewRegistry()
		fake.FailNext.Store(1000)
		srv := schematest.Start(t, fake)
		_, err := OpenRegistry(t.Context(), srConfig(srv.URL))
		var re *RegistryError
		if !errors.As(err, &re) || re.Status != http.StatusServiceUnavailable || re.Code != 50003 {
			t.Fatalf("OpenRegistry(always 503) = %v, want the 503 with error code 50003", err)
		}
		if left := fake.FailNext.Load(); left != 1000-registryAttempts {
			t.Errorf("requests = %d, want %d attempts", 1000-left, registryAttempts)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		fake := schematest.NewRegistry()
		fake.Hang.Store(true)
		srv := schematest.Start(t, fake)
		cfg := srConfig(srv.URL)
		cfg.Timeout = 50 * time.Millisecond
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := OpenRegistry(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), srv.URL) {
			t.Fatalf("OpenRegistry(hanging registry) = %v, want an error naming the registry", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("OpenRegistry took %v against a hanging registry", d)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		_, err := OpenRegistry(t.Context(), srConfig(url))
		if err == nil || !strings.Contains(err.Error(), "schema registry "+url) {
			t.Fatalf("OpenRegistry(closed port) = %v, want an error naming the registry", err)
		}
	})
	t.Run("not avro", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				fmt.Fprint(w, `{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF"}`)
				return
			}
			fmt.Fprint(w, `{"id":3}`)
		}))
		defer srv.Close()
		_, err := OpenRegistry(t.Context(), srConfig(srv.URL))
		if err == nil || !strings.Contains(err.Error(), "PROTOBUF") {
			t.Fatalf("OpenRegistry(protobuf under the id) = %v, want an error naming the schema type", err)
		}
	})
}

func TestHTTPRegistryBasicAuth(t *testing.T) {
	fake := schematest.NewRegistry()
	fake.User, fake.Pass = "metaids", "s3cret-pw"
	srv := schematest.Start(t, fake)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("s3cret-pw\n"), 0o600)

	cfg := srConfig(srv.URL)
	cfg.Username, cfg.PasswordFile = "metaids", pwFile
	if _, err := OpenRegistry(t.Context(), cfg); err != nil {
		t.Fatalf("OpenRegistry(password file) = %v", err)
	}
	cfg = srConfig(srv.URL)
	cfg.Username, cfg.Password = "metaids", "s3cret-pw"
	if _, err := OpenRegistry(t.Context(), cfg); err != nil {
		t.Fatalf("OpenRegistry(password) = %v", err)
	}
	cfg.Password = "wrong-pw"
	_, err := OpenRegistry(t.Context(), cfg)
	var re *RegistryError
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), "-schema-registry.username") {
		t.Fatalf("OpenRegistry(wrong password) = %v, want a 401 naming -schema-registry.username", err)
	}
	if re.retryable() {
		t.Error("a 401 is retried")
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg)} {
		if strings.Contains(s, "wrong-pw") {
			t.Errorf("password printed: %s", s)
		}
	}
	var log strings.Builder
	r, _ := NewHTTPRegistry(cfg)
	slog.New(slog.NewJSONHandler(&log, nil)).Info("registry", "registry", r, "cfg", cfg)
	if strings.Contains(log.String(), "wrong-pw") || !strings.Contains(log.String(), srv.URL) {
		t.Errorf("log = %s, want the URL and no password", log.String())
	}
}

func TestHTTPRegistryTLS(t *testing.T) {
	fake := schematest.NewRegistry()
	srv := httptest.NewUnstartedServer(fake)
	// Count connections rather than time the call: a certificate error
	// must not be retried, and a clock says nothing reliable about that on
	// a loaded machine.
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)

	cfg := srConfig(srv.URL)
	if _, err := OpenRegistry(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("OpenRegistry(https, system CAs) = %v, want a certificate error", err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("a certificate error took %d connections, want 1: it was retried", n)
	}
	cfg.CAFile = ca
	if _, err := OpenRegistry(t.Context(), cfg); err != nil {
		t.Fatalf("OpenRegistry(https, -schema-registry.ca) = %v", err)
	}
}

func TestRegistryConfigValidate(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for _, tc := range []struct {
		name string
		edit func(*RegistryConfig)
		want string // "" means valid
	}{
		{"disabled", func(c *RegistryConfig) {}, ""},
		{"plain", func(c *RegistryConfig) { c.URL = "http://sr:8081" }, ""},
		{"with auth", func(c *RegistryConfig) { c.URL, c.Username, c.Password = "https://sr/api", "u", "p" }, ""},
		{"auth without url", func(c *RegistryConfig) { c.Username = "u" }, "-schema-registry.username: set, but -schema-registry.url is empty"},
		{"bad scheme", func(c *RegistryConfig) { c.URL = "ftp://sr" }, "-schema-registry.url: want an http or https URL"},
		{"no host", func(c *RegistryConfig) { c.URL = "http://" }, "-schema-registry.url"},
		{"unparsable", func(c *RegistryConfig) { c.URL = "http://sr:port" }, "-schema-registry.url"},
		{"credentials in url", func(c *RegistryConfig) { c.URL = "http://u:p@sr" }, "-schema-registry.url: holds credentials"},
		{"query", func(c *RegistryConfig) { c.URL = "http://sr/?x=1" }, "-schema-registry.url: want a base URL"},
		{"ca over http", func(c *RegistryConfig) { c.URL, c.CAFile = "http://sr", notPEM }, "-schema-registry.ca: set, but -schema-registry.url is not https"},
		{"bad ca", func(c *RegistryConfig) { c.URL, c.CAFile = "https://sr", notPEM }, "-schema-registry.ca: no PEM certificates"},
		{"missing ca", func(c *RegistryConfig) { c.URL, c.CAFile = "https://sr", filepath.Join(dir, "nope") }, "-schema-registry.ca:"},
		{"user without password", func(c *RegistryConfig) { c.URL, c.Username = "http://sr", "u" }, "-schema-registry.password: required"},
		{"password without user", func(c *RegistryConfig) { c.URL, c.Password = "http://sr", "p" }, "-schema-registry.username: required"},
		{"both passwords", func(c *RegistryConfig) { c.URL, c.Username, c.Password, c.PasswordFile = "http://sr", "u", "p", empty }, "-schema-registry.password-file: set together"},
		{"empty password file", func(c *RegistryConfig) { c.URL, c.Username, c.PasswordFile = "http://sr", "u", empty }, "-schema-registry.password-file: " + empty + " is empty"},
		{"timeout", func(c *RegistryConfig) { c.URL, c.Timeout = "http://sr", 0 }, "-schema-registry.timeout: must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultRegistryConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := NewHTTPRegistry(DefaultRegistryConfig()); err == nil || !strings.Contains(err.Error(), "-schema-registry.url") {
		t.Errorf("NewHTTPRegistry(no URL) = %v, want an error naming -schema-registry.url", err)
	}
	if r, err := OpenRegistry(t.Context(), DefaultRegistryConfig()); err != nil {
		t.Errorf("OpenRegistry(no URL) = %v", err)
	} else if _, ok := r.(*FixedRegistry); !ok {
		t.Errorf("OpenRegistry(no URL) = %T, want *FixedRegistry", r)
	}
}

func fakeID(f *schematest.Registry, text string) int32 {
	id, _ := f.ID(text)
	return id
}
