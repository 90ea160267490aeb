package eval

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/integration"
)

// The tests evaluate on synthetic traffic (integration.NewTraffic through
// dataset.Synthetic) written out as a Zeek conn.log with Stratosphere's
// label columns, so the data goes through the same reader, and live through
// the same ingest decoder, as a real Zeek dataset. dns_tunnel plays the new
// family, as in the demo.

// testFamily is the new family of the synthetic tests.
const testFamily = integration.FamilyDNSTunnel

// writeZeekLog writes recs as a gzipped Zeek conn.log with label and
// detailed-label columns into dir and returns its path. Every third
// attack row joins its last columns with spaces instead of tabs, as some of
// Stratosphere's files do.
func writeZeekLog(t testing.TB, dir, name string, recs []dataset.Record) string {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t2026-01-01-00-00-00\n")
	b.WriteString("#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\tlabel\tdetailed-label\n")
	b.WriteString("#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\tstring\tstring\n")
	attacks := 0
	for i := range recs {
		f := &recs[i].Flow
		proto := map[uint8]string{6: "tcp", 17: "udp", 1: "icmp"}[f.Proto]
		if proto == "" {
			continue
		}
		state, history := "SF", "ShADadFf"
		switch {
		case f.Proto != 6:
			state, history = "SF", "Dd"
		case f.TCPFlags&0x04 != 0: // RST
			state, history = "REJ", "Sr"
		case f.PktsIn == 0:
			state, history = "S0", "S"
		}
		svc := f.Service
		if svc == "" {
			svc = "-"
		}
		label, detail := "Benign", "-"
		if l := recs[i].Label; l != dataset.Benign {
			label, detail = "Malicious", l
		}
		dur := float64(f.EndNs-f.StartNs) / 1e9
		fmt.Fprintf(&b, "%s\tC%07d\t%s\t%d\t%s\t%d\t%s\t%s\t%.6f\t%d\t%d\t%s\tT\tF\t0\t%s\t%d\t%d\t%d\t%d\t(empty)",
			strconv.FormatFloat(float64(f.StartNs)/1e9, 'f', 6, 64), i, f.SrcAddr, f.SrcPort, f.DstAddr, f.DstPort, proto, svc, dur,
			f.BytesOut, f.BytesIn, state, history, f.PktsOut, f.BytesOut, f.PktsIn, f.BytesIn)
		sep := "\t"
		if label == "Malicious" {
			attacks++
			if attacks%3 == 0 {
				sep = "   "
			}
		}
		b.WriteString(sep + label + sep + detail + "\n")
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(b.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// syntheticLog writes the synthetic test traffic and returns its path.
func syntheticLog(t testing.TB, dir string, seed uint64, hosts int, dur time.Duration) string {
	t.Helper()
	recs, err := dataset.Synthetic(dataset.SyntheticConfig{Seed: seed, Hosts: hosts, Duration: dur, Waves: 2})
	if err != nil {
		t.Fatalf("Synthetic: %v", err)
	}
	return writeZeekLog(t, dir, "synthetic.conn.log.labeled.gz", recs)
}

// testConfig returns an evaluation of the synthetic log with a small,
// quick trainer: the tests check the harness, not the model.
func testConfig(data string) Config {
	cfg := DefaultConfig()
	cfg.Data = []string{data}
	cfg.NewFamilies = []string{testFamily}
	cfg.Shots = 10
	cfg.Offline = true
	cfg.Trainer.Hidden = 24
	cfg.Trainer.PretrainEpochs = 1
	cfg.Trainer.Epochs = 4
	cfg.Trainer.StepsPerEpoch = 40
	cfg.Trainer.Adv.EvalSteps = 1
	return cfg
}

// testLog is quiet unless METAIDS_TEST_LOG is set.
func testLog(t testing.TB) *slog.Logger {
	t.Helper()
	if os.Getenv("METAIDS_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// sharedDir returns ../shared/datasets/name, skipping the test when it is
// absent.
func sharedDir(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "datasets", name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("needs ../shared/datasets/%s beside the repository: %v", name, err)
	}
	return p
}

// The model most tests evaluate is trained once per test binary: training
// is what takes the time, and it is not what those tests check.
var (
	modelOnce sync.Once
	modelDir  string
	modelFile string
	modelData string
	modelErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if modelDir != "" {
		os.RemoveAll(modelDir)
	}
	os.Exit(code)
}

// testModel returns a model file trained on a synthetic log with
// dns_tunnel held out, and that log.
func testModel(t testing.TB) (model, data string) {
	t.Helper()
	modelOnce.Do(func() {
		if modelDir, modelErr = os.MkdirTemp("", "metaids-eval-test-"); modelErr != nil {
			return
		}
		modelData = syntheticLog(t, modelDir, 5, 12, 20*time.Minute)
		m, _, _, err := prepare(context.Background(), testConfig(modelData), slog.New(slog.DiscardHandler))
		if err != nil {
			modelErr = err
			return
		}
		modelFile = filepath.Join(modelDir, "model.bin")
		modelErr = m.Save(modelFile)
	})
	if modelErr != nil {
		t.Fatalf("training the test model: %v", modelErr)
	}
	return modelFile, modelData
}

// skipUnderRace skips an offline test under the race detector: offline
// evaluation trains and scores on one goroutine, so there is nothing for
// it to find, and it makes training ten times slower. The live tests, and
// go test without -race, still run everything.
func skipUnderRace(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("offline: one goroutine, nothing for the race detector to find; go test without -race runs it")
	}
}
