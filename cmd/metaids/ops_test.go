package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/stream"
)

// TestConfigFiles checks every file in testdata/config with -config.check,
// as Prometheus tests its config package: *.good.yaml must pass, and each
// *.bad.yaml must fail with the usage code and name what to fix. The file
// name says which command reads it.
func TestConfigFiles(t *testing.T) {
	// want lists substrings of the error; every one must appear, so that a
	// file with several mistakes is checked to report them all.
	bad := map[string][]string{
		"ingest.unknown-key.bad.yaml":        {"-config.file testdata/config/ingest.unknown-key.bad.yaml", "line 3", "-ingest.bach:", "field bach not found"},
		"ingest.unknown-nested-key.bad.yaml": {"line 4", "-kafka.tls.verify:", "field verify not found"},
		"ingest.bad-value.bad.yaml":          {"-ingest.batch.max-records: must be between 1 and 65536, got 0"},
		"ingest.bad-type.bad.yaml":           {"-config.file", "line 2", "-kafka.timeout:", "`soon`", "time.Duration"},
		"ingest.missing-brokers.bad.yaml":    {"-kafka.brokers: at least one broker is required"},
		"ingest.bad-broker.bad.yaml":         {`-kafka.brokers: "kafka-1" is not host:port`},
		"ingest.sasl.bad.yaml": {
			`-kafka.sasl.mechanism: unknown mechanism "SCRAM-SHA-1"`,
			"-kafka.sasl.username: required",
			"-kafka.sasl.password-file: read testdata/config/no-such-file",
		},
		"ingest.tls-off.bad.yaml":       {"-kafka.tls.ca: set, but -kafka.tls.enabled is false"},
		"ingest.no-inputs.bad.yaml":     {"-ingest.inputs: at least one input topic is required"},
		"ingest.log-format.bad.yaml":    {"-log.format: want json or text, got xml"},
		"ingest.duplicate-key.bad.yaml": {"line 4", `mapping key "partitions" already defined`},
		"ingest.not-a-mapping.bad.yaml": {"-config.file", "line 1"},
	}
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no config files in testdata/config: %v", err)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			cmd, _, _ := strings.Cut(name, ".")
			var out bytes.Buffer
			code := run(t.Context(), []string{cmd, "-config.file", path, "-config.check"}, &out)
			switch {
			case strings.HasSuffix(name, ".good.yaml"):
				if code != exitOK || !strings.Contains(out.String(), "configuration OK") {
					t.Errorf("%s -config.check = %d, want 0 and OK; output:\n%s", cmd, code, out.String())
				}
			case strings.HasSuffix(name, ".bad.yaml"):
				want, ok := bad[name]
				if !ok {
					t.Fatalf("%s has no expected error in the table", name)
				}
				if code != exitUsage {
					t.Errorf("%s -config.check = %d, want %d; output:\n%s", cmd, code, exitUsage, out.String())
				}
				for _, w := range want {
					if !strings.Contains(out.String(), w) {
						t.Errorf("output %q does not contain %q", out.String(), w)
					}
				}
			default:
				t.Fatalf("%s is neither *.good.yaml nor *.bad.yaml", name)
			}
		})
	}
	for name := range bad {
		if !seen[name] {
			t.Errorf("%s is in the table but not in testdata/config", name)
		}
	}
}

// TestConfigLayers checks the precedence of the layers on a real command:
// a flag beats the environment, which beats the file, which beats the
// defaults; and an environment error names the variable and its flag.
func TestConfigLayers(t *testing.T) {
	check := func(args []string, wantCode int, want string) {
		t.Helper()
		var out bytes.Buffer
		if code := run(t.Context(), append(args, "-config.check"), &out); code != wantCode || !strings.Contains(out.String(), want) {
			t.Errorf("run(%q) = %d, %q; want %d and %q", args, code, out.String(), wantCode, want)
		}
	}
	bad := filepath.Join("testdata", "config", "ingest.bad-value.bad.yaml")
	// The file's max-records of 0 is overridden by the environment, and
	// the environment's 5 by the flag: either way it validates.
	t.Setenv("METAIDS_INGEST_BATCH_MAX_RECORDS", "5")
	check([]string{"ingest", "-config.file", bad}, exitOK, "configuration OK")
	t.Setenv("METAIDS_INGEST_BATCH_MAX_RECORDS", "0")
	check([]string{"ingest", "-config.file", bad}, exitUsage, "-ingest.batch.max-records: must be between 1 and 65536, got 0")
	check([]string{"ingest", "-config.file", bad, "-ingest.batch.max-records", "7"}, exitOK, "configuration OK")
	t.Setenv("METAIDS_INGEST_BATCH_MAX_RECORDS", "many")
	check([]string{"ingest", "-config.file", bad}, exitUsage, "METAIDS_INGEST_BATCH_MAX_RECORDS (-ingest.batch.max-records)")
	os.Unsetenv("METAIDS_INGEST_BATCH_MAX_RECORDS")
	// The file can come from the environment too.
	t.Setenv("METAIDS_CONFIG_FILE", filepath.Join("testdata", "config", "ingest.minimal.good.yaml"))
	check([]string{"ingest"}, exitOK, "configuration OK")
	t.Setenv("METAIDS_CONFIG_FILE", bad)
	check([]string{"ingest"}, exitUsage, "-ingest.batch.max-records")
}

// scrape returns the text exposition of addr's /metrics.
func scrape(addr string) (string, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/metrics: %s", resp.Status)
	}
	return string(b), err
}

func httpStatus(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// sum adds the values of a family's series whose labels include match.
func metricSum(mf *dto.MetricFamily, match map[string]string) float64 {
	var s float64
	if mf == nil {
		return 0
	}
outer:
	for _, m := range mf.GetMetric() {
		for k, v := range match {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue outer
			}
		}
		switch {
		case m.Counter != nil:
			s += m.GetCounter().GetValue()
		case m.Gauge != nil:
			s += m.GetGauge().GetValue()
		case m.Untyped != nil:
			s += m.GetUntyped().GetValue()
		case m.Histogram != nil:
			s += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return s
}

var metricName = regexp.MustCompile(`^metaids_(ingest|scorer|adapter|stream|pipeline)_[a-z][a-z0-9_]*[a-z0-9]$`)

// forbiddenLabels would give a series per host, address, flow or offset.
var forbiddenLabels = []string{"host", "ip", "addr", "src_addr", "dst_addr", "src", "dst", "flow", "flow_id", "offset", "alert_id", "instance"}

// lintMetrics applies promtool's `check metrics` rules (promlint, which
// testutil.CollectAndLint runs) to the exposition, and the project's own:
// metaids_<stage>_<what>_<unit> names, counters ending in _total, a help
// text on every family, and no label of unbounded cardinality.
func lintMetrics(t *testing.T, text string) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "metaids_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	for name, mf := range parseMetrics(t, text) {
		if !strings.HasPrefix(name, "metaids_") {
			continue
		}
		if !metricName.MatchString(name) {
			t.Errorf("metric %s: want metaids_<stage>_<what>_<unit>", name)
		}
		if mf.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
		if strings.TrimSpace(mf.GetHelp()) == "" {
			t.Errorf("metric %s has no help text", name)
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if slices.Contains(forbiddenLabels, l.GetName()) {
					t.Errorf("metric %s has label %q: one series per host, address or record", name, l.GetName())
				}
			}
		}
	}
}

// startCmd runs `metaids args...` in this process until the test ends or
// the returned stop is called; stop returns the exit code.
func startCmd(t *testing.T, args ...string) (out *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	out = &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, out) }()
	code, stopped := 0, false
	stop = func() int {
		if !stopped {
			cancel()
			select {
			case code = <-done:
			case <-time.After(60 * time.Second):
				t.Fatalf("metaids %s did not stop within 60s; output:\n%s", args[0], out.String())
			}
			stopped = true
		}
		return code
	}
	t.Cleanup(func() { stop() })
	return out, stop
}

// waitReady waits for addr's /readyz to answer 200.
func waitReady(t *testing.T, addr string, out *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, err := httpStatus("http://" + addr + "/readyz")
		if err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d, %v after 30s; output:\n%s", code, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// produceRaw writes values to topic, one message each, keyed by index.
func produceRaw(t *testing.T, cfg stream.Config, topic string, values ...string) {
	t.Helper()
	tr, err := cfg.Transport()
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond}
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// fastArgs are the stage timings tests use: writes go out at once, fetches
// wait briefly, and the group notices a member's exit quickly.
var fastArgs = []string{"-kafka.writer.batch-timeout", "5ms", "-kafka.reader.max-wait", "50ms",
	"-kafka.group.session-timeout", "2s", "-kafka.group.heartbeat-interval", "200ms", "-kafka.retry-backoff-max", "500ms"}

// TestOpsIngestMetrics runs `metaids ingest`, feeds it good and bad
// records, and checks its ops surface: /healthz, /readyz, the metrics the
// issue lists (records in/out/dead-lettered, batch sizes, latency
// histograms, lag per partition), promtool's lint rules, balanced counts,
// JSON logs, and a clean exit on cancellation.
func TestOpsIngestMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the ingest command")
	}
	e := startEmbedded(t, 2, "flows.goflow2")
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := append([]string{"ingest", "-kafka.brokers", e.Addr(), "-ingest.inputs", "flows.goflow2",
		"-ingest.partitions", "2", "-http.addr", addr, "-ingest.replay"}, fastArgs...)
	out, stop := startCmd(t, args...)
	waitReady(t, addr, out)
	if code, err := httpStatus("http://" + addr + "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz = %d, %v, want 200", code, err)
	}

	good := nonEmptyLines(fixture(t, "goflow2/flows.jsonl"))
	garbage := []string{"{not json", "\x00\x01\x02", `{"type":"IPFIX","src_addr":"not an address"}`}
	produceRaw(t, e.Config(), "flows.goflow2", append(good, garbage...)...)
	var text string
	var mfs map[string]*dto.MetricFamily
	eventually(t, 30*time.Second, func() error {
		var err error
		if text, err = scrape(addr); err != nil {
			return err
		}
		mfs = parseMetrics(t, text)
		in := metricSum(mfs["metaids_stream_consumed_records_total"], map[string]string{"group": "metaids-ingest"})
		handled := metricSum(mfs["metaids_ingest_records_total"], nil)
		if in != float64(len(good)+len(garbage)) || handled != in {
			return fmt.Errorf("consumed %v, handled %v, want %d each", in, handled, len(good)+len(garbage))
		}
		// A record is counted as handled before its batch's output is
		// produced and its offset committed: wait for those too, or the
		// checks below race the end of the batch.
		dead := metricSum(mfs["metaids_ingest_records_total"], map[string]string{"outcome": "dead_lettered"})
		if dlq := metricSum(mfs["metaids_stream_produced_messages_total"], map[string]string{"topic": "flows.dlq"}); dlq < dead {
			return fmt.Errorf("%v of %v dead letters produced", dlq, dead)
		}
		if metricSum(mfs["metaids_stream_commits_total"], nil) == 0 {
			return fmt.Errorf("no commit yet")
		}
		return nil
	})
	ok := metricSum(mfs["metaids_ingest_records_total"], map[string]string{"outcome": "ok"})
	dead := metricSum(mfs["metaids_ingest_records_total"], map[string]string{"outcome": "dead_lettered"})
	skipped := metricSum(mfs["metaids_ingest_records_total"], map[string]string{"outcome": "skipped"})
	if dead < 2 || ok+dead+skipped != float64(len(good)+len(garbage)) {
		t.Errorf("ok %v + dead_lettered %v + skipped %v, want %d in all with the garbage dead-lettered", ok, dead, skipped, len(good)+len(garbage))
	}
	if got := metricSum(mfs["metaids_ingest_dead_letters_total"], nil); got != dead {
		t.Errorf("dead letters by reason = %v, want %v", got, dead)
	}
	if got := metricSum(mfs["metaids_stream_produced_messages_total"], map[string]string{"topic": "flows.dlq"}); got != dead {
		t.Errorf("messages produced to flows.dlq = %v, want %v", got, dead)
	}
	for _, want := range []struct {
		name string
		typ  dto.MetricType
	}{
		{"metaids_ingest_records_total", dto.MetricType_COUNTER},
		{"metaids_ingest_dead_letters_total", dto.MetricType_COUNTER},
		{"metaids_ingest_flows_total", dto.MetricType_COUNTER},
		{"metaids_ingest_batch_rows", dto.MetricType_HISTOGRAM},
		{"metaids_stream_consumed_records_total", dto.MetricType_COUNTER},
		{"metaids_stream_produced_messages_total", dto.MetricType_COUNTER},
		{"metaids_stream_commits_total", dto.MetricType_COUNTER},
		{"metaids_stream_consumer_batch_records", dto.MetricType_HISTOGRAM},
		{"metaids_stream_handler_seconds", dto.MetricType_HISTOGRAM},
		{"metaids_stream_consumer_lag", dto.MetricType_GAUGE},
		{"go_goroutines", dto.MetricType_GAUGE},
		{"process_cpu_seconds_total", dto.MetricType_COUNTER},
	} {
		mf := mfs[want.name]
		if mf == nil {
			t.Errorf("/metrics has no %s", want.name)
			continue
		}
		if mf.GetType() != want.typ {
			t.Errorf("%s is a %v, want a %v", want.name, mf.GetType(), want.typ)
		}
	}
	// Lag is per partition: one series for each of the input's two.
	parts := map[string]bool{}
	for _, m := range mfs["metaids_stream_consumer_lag"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "partition" {
				parts[l.GetValue()] = true
			}
		}
	}
	if !parts["0"] || !parts["1"] {
		t.Errorf("consumer lag partitions = %v, want 0 and 1", parts)
	}
	lintMetrics(t, text)

	if code := stop(); code != exitOK {
		t.Errorf("ingest exited %d after cancellation, want 0", code)
	}
	checkJSONLogs(t, out.String(), "ingest")
}

// checkJSONLogs checks that every line is a JSON slog record and that the
// stage's lifecycle is logged with its name.
func checkJSONLogs(t *testing.T, logs, stage string) {
	t.Helper()
	var stopped bool
	for _, line := range nonEmptyLines([]byte(logs)) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("log line has no %q: %q", k, line)
			}
		}
		if rec["msg"] == "stopped" && rec["stage"] == stage {
			stopped = true
		}
	}
	if !stopped {
		t.Errorf("no JSON record {stage: %s, msg: stopped} in the logs:\n%s", stage, logs)
	}
}

// TestOpsReadyzBeforeJoin checks that a stage that cannot reach its brokers
// is alive but not ready, and still stops cleanly; and that an ops address
// already in use fails the command naming -http.addr.
func TestOpsReadyzBeforeJoin(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	nowhere := "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := append([]string{"ingest", "-kafka.brokers", nowhere, "-ingest.inputs", "flows.goflow2",
		"-ingest.create-topics=false", "-http.addr", addr}, fastArgs...)
	out, stop := startCmd(t, args...)
	eventually(t, 10*time.Second, func() error {
		code, err := httpStatus("http://" + addr + "/healthz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/healthz = %d", code)
		}
		return err
	})
	if code, err := httpStatus("http://" + addr + "/readyz"); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("/readyz without a broker = %d, %v, want 503", code, err)
	}

	// A second ingest on the same ops address.
	var out2 bytes.Buffer
	code := run(t.Context(), append([]string{"ingest", "-kafka.brokers", nowhere, "-ingest.inputs", "flows.goflow2",
		"-ingest.create-topics=false", "-http.addr", addr}, fastArgs...), &out2)
	if code != exitRuntime || !strings.Contains(out2.String(), "-http.addr") {
		t.Errorf("ingest on a busy -http.addr = %d, %q; want %d and a message naming -http.addr", code, out2.String(), exitRuntime)
	}
	if code := stop(); code != exitOK {
		t.Errorf("ingest without a broker exited %d on cancellation, want 0; output:\n%s", code, out.String())
	}
}

// opsPKI is a CA, a broker certificate for 127.0.0.1 and a client
// certificate, written as PEM files where a file is what a stage reads.
type opsPKI struct {
	ca                            *x509.CertPool
	server                        tls.Certificate
	caFile, clientCert, clientKey string
}

func newOpsPKI(t *testing.T) opsPKI {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "metaids ops test CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "metaids"},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	serverDER, serverKey := leaf(2, x509.ExtKeyUsageServerAuth)
	clientDER, clientKey := leaf(3, x509.ExtKeyUsageClientAuth)
	keyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	p := opsPKI{ca: x509.NewCertPool(), server: tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}}
	p.ca.AddCert(ca)
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	p.clientCert = write("client.pem", "CERTIFICATE", clientDER)
	p.clientKey = write("client-key.pem", "EC PRIVATE KEY", keyDER)
	return p
}

// TestTLSSASLIngest runs `metaids ingest` and `metaids replay` against the
// embedded broker requiring mutual TLS and SASL, for each mechanism, with
// the password from the environment or a file as an operator would give
// it; records must flow through. With a wrong password the stage must fail
// within seconds, say why, and never print the password.
func TestTLSSASLIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts brokers and the ingest command")
	}
	pki := newOpsPKI(t)
	const user, pass = "metaids-ingest", "c0rrect-h0rse"
	for _, tc := range []struct {
		mech     string
		fromFile bool
	}{
		{stream.MechanismSCRAMSHA512, false},
		{stream.MechanismSCRAMSHA256, true},
		{stream.MechanismPLAIN, false},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			e, err := stream.StartEmbedded(stream.EmbeddedConfig{
				Partitions: 2, SeedTopics: []string{"flows.goflow2"},
				Users: []stream.SASLUser{{Mechanism: tc.mech, Username: user, Password: pass}},
				TLS: &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientAuth: tls.RequireAndVerifyClientCert,
					ClientCAs: pki.ca, MinVersion: tls.VersionTLS12},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.Close)
			security := []string{"-kafka.brokers", e.Addr(), "-kafka.tls.enabled", "-kafka.tls.ca", pki.caFile,
				"-kafka.tls.cert", pki.clientCert, "-kafka.tls.key", pki.clientKey,
				"-kafka.sasl.mechanism", tc.mech, "-kafka.sasl.username", user}
			secret := func(pw string) []string {
				if tc.fromFile {
					f := filepath.Join(t.TempDir(), "password")
					os.WriteFile(f, []byte(pw+"\n"), 0o600)
					return []string{"-kafka.sasl.password-file", f}
				}
				t.Setenv("METAIDS_KAFKA_SASL_PASSWORD", pw)
				return nil
			}

			addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
			args := slices.Concat([]string{"ingest", "-ingest.inputs", "flows.goflow2", "-ingest.partitions", "2",
				"-http.addr", addr, "-ingest.replay"}, security, secret(pass), fastArgs)
			out, stop := startCmd(t, args...)
			waitReady(t, addr, out)

			fx := filepath.Join(t.TempDir(), "flows.jsonl")
			os.WriteFile(fx, fixture(t, "goflow2/flows.jsonl"), 0o644)
			var rout bytes.Buffer
			rargs := slices.Concat([]string{"replay", "-replay.topic", "flows.goflow2"}, security, secret(pass), []string{fx})
			if code := run(t.Context(), rargs, &rout); code != exitOK {
				t.Fatalf("replay over TLS+%s = %d; output:\n%s", tc.mech, code, rout.String())
			}
			want := float64(len(nonEmptyLines(fixture(t, "goflow2/flows.jsonl"))))
			eventually(t, 30*time.Second, func() error {
				text, err := scrape(addr)
				if err != nil {
					return err
				}
				mfs := parseMetrics(t, text)
				if got := metricSum(mfs["metaids_ingest_records_total"], map[string]string{"outcome": "ok"}); got != want {
					return fmt.Errorf("records ok = %v, want %v", got, want)
				}
				if got := metricSum(mfs["metaids_ingest_flows_total"], nil); got == 0 {
					return errors.New("no flows produced to features")
				}
				return nil
			})
			if code := stop(); code != exitOK {
				t.Errorf("ingest exited %d, want 0; output:\n%s", code, out.String())
			}

			// Wrong credentials: the stage gives up at once with the reason.
			start := time.Now()
			var bad bytes.Buffer
			bargs := slices.Concat([]string{"ingest", "-ingest.inputs", "flows.goflow2", "-http.addr", ""}, security, secret("wr0ng-pa55"), fastArgs)
			code := run(t.Context(), bargs, &bad)
			if code != exitRuntime {
				t.Errorf("ingest with a wrong password = %d, want %d; output:\n%s", code, exitRuntime, bad.String())
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("ingest with a wrong password took %v to fail, want under 10s", d)
			}
			if !strings.Contains(strings.ToLower(bad.String()), "sasl authentication failed") {
				t.Errorf("output does not say the SASL authentication failed:\n%s", bad.String())
			}
			for _, s := range []string{out.String(), rout.String(), bad.String()} {
				if strings.Contains(s, pass) || strings.Contains(s, "wr0ng-pa55") {
					t.Errorf("a password was printed:\n%s", s)
				}
			}
		})
	}
}

// TestOpsUpMetrics runs `metaids up` (every stage in one process) with a
// tiny trained model, feeds it flows, and checks the scorer's and the
// adapter's series the issue lists (model version, host-state size, step
// latency, batch sizes, model updates), the stages' in/out counts, and
// promtool's lint rules over the whole exposition.
func TestOpsUpMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: trains a tiny model and runs every stage")
	}
	dir := t.TempDir()
	modelFile := filepath.Join(dir, "tiny.model")
	var tout bytes.Buffer
	if code := run(t.Context(), []string{"train", "--synthetic", "--out", modelFile, "--plots", "none", "--report", "none",
		"-synthetic-data.hosts=4", "-synthetic-data.duration=3m", "-train.hidden=8", "-train.epochs=1",
		"-train.pretrain-epochs=1", "-train.steps-per-epoch=3", "-progress=off"}, &tout); code != exitOK {
		t.Fatalf("train = %d; output:\n%s", code, tout.String())
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	out, stop := startCmd(t, append([]string{"up", "-http.addr", addr, "-model.file", modelFile,
		"-model.signing-key", filepath.Join(dir, "signing.pem"), "-broker.partitions", "2"}, fastArgs...)...)
	waitReady(t, addr, out)
	brokers := regexp.MustCompile(`brokers (127\.0\.0\.1:\d+)`).FindStringSubmatch(out.String())
	if brokers == nil {
		t.Fatalf("up did not print its brokers; output:\n%s", out.String())
	}
	cfg := stream.DefaultConfig()
	cfg.Brokers = []string{brokers[1]}
	good := nonEmptyLines(fixture(t, "goflow2/flows.jsonl"))
	produceRaw(t, cfg, "flows.goflow2", good...)

	var text string
	var mfs map[string]*dto.MetricFamily
	eventually(t, 30*time.Second, func() error {
		var err error
		if text, err = scrape(addr); err != nil {
			return err
		}
		mfs = parseMetrics(t, text)
		flows := metricSum(mfs["metaids_ingest_flows_total"], nil)
		scored := metricSum(mfs["metaids_scorer_flows_total"], nil)
		if flows != float64(len(good)) || scored != flows {
			return fmt.Errorf("ingest produced %v flows, scorer scored %v, want %d each", flows, scored, len(good))
		}
		// The scorer counts a flow when it steps it and its outputs once
		// the broker acknowledges them: wait for both.
		in := metricSum(mfs["metaids_scorer_records_total"], nil)
		if out := metricSum(mfs["metaids_scorer_output_records_total"], map[string]string{"output": "scores"}); out < in {
			return fmt.Errorf("scorer records in %v, scores out %v so far", in, out)
		}
		return nil
	})
	for _, want := range []struct {
		name string
		typ  dto.MetricType
	}{
		{"metaids_scorer_records_total", dto.MetricType_COUNTER},
		{"metaids_scorer_flows_total", dto.MetricType_COUNTER},
		{"metaids_scorer_output_records_total", dto.MetricType_COUNTER},
		{"metaids_scorer_batch_flows", dto.MetricType_HISTOGRAM},
		{"metaids_scorer_step_seconds", dto.MetricType_HISTOGRAM},
		{"metaids_scorer_model_version", dto.MetricType_GAUGE},
		{"metaids_scorer_model_updates_total", dto.MetricType_COUNTER},
		{"metaids_scorer_hosts", dto.MetricType_GAUGE},
		{"metaids_scorer_state_bytes", dto.MetricType_GAUGE},
		{"metaids_adapter_model_version", dto.MetricType_GAUGE},
		{"metaids_adapter_model_updates_total", dto.MetricType_COUNTER},
		{"metaids_adapter_fit_seconds", dto.MetricType_HISTOGRAM},
		{"metaids_adapter_gate_decisions_total", dto.MetricType_COUNTER},
		{"metaids_stream_consumer_lag", dto.MetricType_GAUGE},
		{"metaids_stream_handler_seconds", dto.MetricType_HISTOGRAM},
	} {
		mf := mfs[want.name]
		if mf == nil {
			t.Errorf("/metrics has no %s", want.name)
			continue
		}
		if mf.GetType() != want.typ {
			t.Errorf("%s is a %v, want a %v", want.name, mf.GetType(), want.typ)
		}
	}
	if v := metricSum(mfs["metaids_scorer_model_version"], nil); v < 1 {
		t.Errorf("metaids_scorer_model_version = %v, want the published model's version", v)
	}
	if v := metricSum(mfs["metaids_adapter_model_version"], nil); v != metricSum(mfs["metaids_scorer_model_version"], nil) {
		t.Errorf("adapter model version %v, scorer's %v: want the same model", v, metricSum(mfs["metaids_scorer_model_version"], nil))
	}
	if h := metricSum(mfs["metaids_scorer_hosts"], nil); h < 1 || metricSum(mfs["metaids_scorer_state_bytes"], nil) <= 0 {
		t.Errorf("scorer holds %v hosts in %v bytes, want the fixture's hosts", h, metricSum(mfs["metaids_scorer_state_bytes"], nil))
	}
	// Each scored features message is one record in and at least a
	// scores record out.
	in := metricSum(mfs["metaids_scorer_records_total"], nil)
	if out := metricSum(mfs["metaids_scorer_output_records_total"], map[string]string{"output": "scores"}); in < 1 || out < in {
		t.Errorf("scorer records in %v, scores out %v", in, out)
	}
	lintMetrics(t, text)
	if code := stop(); code != exitOK {
		t.Errorf("up exited %d on cancellation, want 0", code)
	}
}

// BenchmarkOpsStages measures the stages as deployed, each fetching from a
// broker in another process (the test binary as `metaids broker`), so that
// the CPU this process uses is the stages' own:
//
//   - ingest: `metaids ingest` decoding goflow2 JSON, batching into Arrow,
//     producing and committing;
//   - pipeline: `metaids up` against that broker, with a production-shape
//     model (H=64): ingest, scorer and adapter together.
//
// It reports flows per CPU-second of this process (what deploy/README.md
// sizes replicas with) and flows per wall second. Each run starts its own
// broker and input, untimed. Run it alone, on an otherwise idle machine:
//
//	go test ./cmd/metaids -run '^$' -bench OpsStages -benchtime 1x -count 3
func BenchmarkOpsStages(b *testing.B) {
	const records = 200_000
	freeAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	fx, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "goflow2", "flows.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	lines := nonEmptyLines(fx)
	// fresh starts a broker in another process holding the input records,
	// so that each run reads only its own.
	fresh := func() (string, func()) {
		brokerAddr := freeAddr()
		p := startStage(b, "broker", "--addr", brokerAddr, "--partitions", "4", "--topics", "flows.goflow2", "--log.level", "warn")
		stop := func() { p.cmd.Process.Kill(); <-p.done }
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := net.Dial("tcp", brokerAddr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				stop()
				b.Fatalf("broker did not listen: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		w := &kafka.Writer{Addr: kafka.TCP(brokerAddr), Balancer: &kafka.RoundRobin{}, RequiredAcks: kafka.RequireAll,
			BatchTimeout: 5 * time.Millisecond, BatchSize: 5000}
		defer w.Close()
		msgs := make([]kafka.Message, 5000)
		for n := 0; n < records; n += len(msgs) {
			for i := range msgs {
				msgs[i] = kafka.Message{Topic: "flows.goflow2", Value: []byte(lines[(n+i)%len(lines)])}
			}
			if err := w.WriteMessages(b.Context(), msgs...); err != nil {
				stop()
				b.Fatal(err)
			}
		}
		return brokerAddr, stop
	}

	dir := b.TempDir()
	modelFile := filepath.Join(dir, "h64.model")
	var tout bytes.Buffer
	if code := run(b.Context(), []string{"train", "--synthetic", "--out", modelFile, "--plots", "none", "--report", "none",
		"-synthetic-data.hosts=4", "-synthetic-data.duration=3m", "-train.epochs=1", "-train.pretrain-epochs=1",
		"-train.steps-per-epoch=3", "-progress=off"}, &tout); code != exitOK {
		b.Fatalf("train = %d; output:\n%s", code, tout.String())
	}

	for _, tc := range []struct {
		name, done string
		args       func(group, addr string) []string
	}{
		{"stage=ingest", "metaids_ingest_flows_total", func(group, addr string) []string {
			return []string{"ingest", "-ingest.inputs", "flows.goflow2", "-ingest.partitions", "4", "-ingest.group", group}
		}},
		{"stage=pipeline", "metaids_scorer_flows_total", func(group, addr string) []string {
			// up creates the pipeline's topics on the broker.
			return []string{"up", "-model.file", modelFile, "-model.signing-key", filepath.Join(dir, group+".pem"),
				"-ingest.inputs", "flows.goflow2", "-ingest.group", group + "-ingest",
				"-scorer.group", group + "-scorer", "-broker.partitions", "4"}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var cpu0, cpu1 syscall.Rusage
			for b.Loop() {
				brokerAddr, stopBroker := fresh()
				addr := freeAddr()
				group := fmt.Sprintf("bench-%d", time.Now().UnixNano())
				ctx, cancel := context.WithCancel(b.Context())
				var out syncBuffer
				done := make(chan int, 1)
				syscall.Getrusage(syscall.RUSAGE_SELF, &cpu0)
				start := time.Now()
				args := append(tc.args(group, addr), "-kafka.brokers", brokerAddr, "-ingest.replay", "-http.addr", addr, "-log.level", "warn")
				go func() { done <- run(ctx, args, &out) }()
				for {
					time.Sleep(100 * time.Millisecond)
					text, err := scrape(addr)
					if err == nil && strings.Contains(text, fmt.Sprintf("%s %d\n", tc.done, records)) {
						break
					}
					select {
					case code := <-done:
						b.Fatalf("%s exited %d; output:\n%s", args[0], code, out.String())
					default:
					}
				}
				wall := time.Since(start)
				syscall.Getrusage(syscall.RUSAGE_SELF, &cpu1)
				cancel()
				<-done
				stopBroker()
				cpu := time.Duration(cpu1.Utime.Nano() + cpu1.Stime.Nano() - cpu0.Utime.Nano() - cpu0.Stime.Nano())
				b.ReportMetric(records/cpu.Seconds(), "flows/cpu-s")
				b.ReportMetric(records/wall.Seconds(), "flows/s")
			}
		})
	}
}
