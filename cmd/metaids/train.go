package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/integration"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
	"github.com/metaids/metaids/train"
)

// trainConfig is `metaids train`: read labelled datasets (or generate
// synthetic traffic), train the model, write it with a JSON report and
// plots.
type trainConfig struct {
	// Data lists dataset files, directories or globs; the flag may repeat.
	Data []string `yaml:"data" help:"dataset files, directories or globs (comma-separated or repeated): CICFlowMeter CSV, Zeek conn.log with Stratosphere labels, LUFlow CSV, gzipped or not"`
	// Synthetic trains on the project's synthetic traffic instead, holding
	// out integration.FamilyDNSTunnel unless -holdout-family says
	// otherwise: the model the demo uses, whose scripted analyst later
	// labels that family.
	Synthetic bool `yaml:"synthetic" help:"train on synthetic traffic (the demo's model; holds out dns_tunnel unless -holdout-family is set, 'none' for no holdout)"`
	// Out is the model file to write. Required.
	Out string `yaml:"out" help:"model file to write"`
	// Report is the JSON report; default <out>.report.json, "none" for none.
	Report string `yaml:"report" help:"JSON report file (default <out>.report.json; none to skip)"`
	// Plots is the directory for PNG plots; default <out>.plots, "none"
	// for none.
	Plots string `yaml:"plots" help:"directory for PNG plots (default <out>.plots; none to skip)"`
	// Ablations also trains and evaluates the model without each
	// objective, which multiplies the training time by about five.
	Ablations bool `yaml:"ablations" help:"also train without meta-training, without adversarial augmentation, without pretraining, and with pretraining only, and report each"`
	// Baseline trains a baseline instead of the per-host LSTM:
	// train.BaselinePerFlow, the same features, cell and heads on each flow
	// alone. Default "" (the LSTM).
	Baseline string `yaml:"baseline" help:"train a baseline instead of the per-host LSTM: per-flow (the same features and heads on each flow alone, state reset before every flow)"`
	// Progress shows a progress bar: auto (on a terminal), on or off.
	Progress string `yaml:"progress" help:"progress bar: auto (only on a terminal), on or off"`

	// Publish also publishes the model to the models topic, keyed by its
	// name and signed with SigningKey, for the scorers and the adapter.
	Publish bool `yaml:"publish" help:"publish the model to the models topic (needs -signing-key and -kafka.*)"`
	// SigningKey is the PEM PKCS #8 Ed25519 private key that signs the
	// published model; scorers accept only updates signed by a key they
	// trust.
	SigningKey string `yaml:"signing-key" help:"PEM PKCS #8 Ed25519 private key file that signs the published model"`
	// Kafka is where to publish.
	Kafka stream.Config `yaml:"kafka"`

	Dataset       dataset.Config          `yaml:",inline"`
	SyntheticData dataset.SyntheticConfig `yaml:"synthetic-data"`
	Train         train.Config            `yaml:"train"`
	Log           LogConfig               `yaml:"log"`
}

func defaultTrainConfig() trainConfig {
	return trainConfig{
		Progress:      "auto",
		Dataset:       dataset.DefaultConfig(),
		SyntheticData: dataset.DefaultSyntheticConfig(),
		Train:         train.DefaultConfig(),
		Log:           LogConfig{Format: "text", Level: "info"},
		Kafka:         stream.DefaultConfig(),
	}
}

// Validate reports every problem, each naming its flag.
func (c trainConfig) Validate() error {
	var errs []error
	if len(c.Data) == 0 && !c.Synthetic {
		errs = append(errs, errors.New("-data: give dataset files, directories or globs, or -synthetic"))
	}
	if len(c.Data) > 0 && c.Synthetic {
		errs = append(errs, errors.New("-data: not with -synthetic"))
	}
	if c.Out == "" {
		errs = append(errs, errors.New("-out: the model file to write is required"))
	}
	if c.Baseline != "" && c.Baseline != train.BaselinePerFlow {
		errs = append(errs, fmt.Errorf("-baseline: want %s, got %q", train.BaselinePerFlow, c.Baseline))
	}
	switch c.Progress {
	case "auto", "on", "off":
	default:
		errs = append(errs, fmt.Errorf("-progress: want auto, on or off, got %q", c.Progress))
	}
	if err := c.Dataset.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Synthetic {
		if err := c.SyntheticData.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Train.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Publish {
		if c.SigningKey == "" {
			errs = append(errs, errors.New("-signing-key: required with -publish: scorers accept only signed models"))
		}
		if err := c.Kafka.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func runTrain(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := defaultTrainConfig()
	fs := flag.NewFlagSet("metaids train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := bind(fs, &cfg)
	if err := b.load(joinMulti(args, "data", "holdout-family")); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		fmt.Fprintf(stderr, "metaids train: %v\n", err)
		return exitUsage
	}
	holdout := cfg.Dataset.Holdout
	switch {
	case len(holdout) == 1 && holdout[0] == "none":
		cfg.Dataset.Holdout = nil
	case len(holdout) == 0 && cfg.Synthetic:
		cfg.Dataset.Holdout = []string{integration.FamilyDNSTunnel}
	}
	log, err := newLogger(stderr, cfg.Log)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "metaids train: %v\n", err)
		return exitUsage
	}
	if b.check {
		fmt.Fprintln(stderr, "metaids train: configuration OK")
		return exitOK
	}
	if err := trainMain(ctx, cfg, stderr, log); err != nil {
		log.Error("training failed", "err", err)
		return exitRuntime
	}
	return exitOK
}

func trainMain(ctx context.Context, cfg trainConfig, stderr io.Writer, log *slog.Logger) error {
	t0 := time.Now()
	var (
		recs  []dataset.Record
		stats *dataset.Stats
		err   error
	)
	if cfg.Synthetic {
		recs, err = dataset.Synthetic(cfg.SyntheticData)
	} else {
		var st dataset.Stats
		recs, st, err = dataset.Load(cfg.Data, cfg.Dataset)
		stats = &st
	}
	if err != nil {
		return err
	}
	d, err := dataset.Build(recs, cfg.Dataset)
	if err != nil {
		return err
	}
	log.Info("data loaded", "flows", d.Len(), "hosts", len(d.Hosts), "classes", strings.Join(d.Classes, ","),
		"holdout", strings.Join(d.Holdout, ","), "dt_prev_from_gaps", d.DeltaT, "seconds", time.Since(t0).Seconds())
	cfg.Train.PerFlow = cfg.Baseline == train.BaselinePerFlow
	opt := train.DefaultOptions()
	opt.Ablations = cfg.Ablations
	bar := newProgressBar(stderr, cfg.Progress)
	res, rep, err := train.Run(ctx, d, cfg.Train, opt, bar.update)
	bar.done()
	if err != nil {
		return err
	}
	rep.Data.Loader = stats
	m := res.Model
	m.Version = 1
	m.CreatedNs = time.Now().UnixNano()
	if dir := filepath.Dir(cfg.Out); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("write model: %w", err)
		}
	}
	if err := m.Save(cfg.Out); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	log.Info("model written", "file", cfg.Out, "per_flow", m.PerFlow(), "classes", strings.Join(m.Classes(), ","),
		"train_seconds", res.Duration.Seconds(), "best_epoch", res.BestEpoch+1, "epochs", len(res.History))
	ev := rep.Test
	log.Info("test split", "binary_f1", float64(ev.Classifier.F1), "precision", float64(ev.Classifier.Precision),
		"recall", float64(ev.Classifier.Recall), "fpr", float64(ev.Classifier.FPR), "deployed_fpr", float64(ev.Deployed.FPR),
		"roc_auc", float64(ev.ROC.AUC), "anomaly_roc_auc", float64(ev.AnomalyROC.AUC))
	for _, fsr := range rep.FewShot {
		log.Info("few-shot", "family", fsr.Family, "k", fsr.K, "proto_recall", float64(fsr.ProtoRecall), "proto_fpr", float64(fsr.ProtoFPR),
			"finetuned_recall", float64(fsr.Recall), "finetuned_fpr", float64(fsr.FPR))
	}
	if path := derived(cfg.Report, cfg.Out, ".report.json"); path != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		log.Info("report written", "file", path)
	}
	if dir := derived(cfg.Plots, cfg.Out, ".plots"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("plots: %w", err)
		}
		files, err := train.WritePlots(dir, rep)
		if err != nil {
			return err
		}
		log.Info("plots written", "dir", dir, "files", len(files))
	}
	if cfg.Publish {
		if err := publishTrained(ctx, cfg, m, log); err != nil {
			return err
		}
	}
	log.Info("done", "seconds", time.Since(t0).Seconds())
	return nil
}

// publishTrained signs m as a full update and publishes it to the models
// topic (created compacted with one partition if missing), keyed by the
// model's name as the scorer and the adapter expect.
func publishTrained(ctx context.Context, cfg trainConfig, m *model.Model, log *slog.Logger) error {
	priv, err := schemas.LoadPrivateKey(cfg.SigningKey)
	if err != nil {
		return fmt.Errorf("-signing-key: %w", err)
	}
	u, err := m.Update(schemas.UpdateFull)
	if err != nil {
		return err
	}
	keyID := schemas.KeyID(priv.Public().(ed25519.PublicKey))
	if err := schemas.SignModelUpdate(u, keyID, priv); err != nil {
		return err
	}
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		return err
	}
	val, err := codecs.AppendModelUpdate(nil, u)
	if err != nil {
		return fmt.Errorf("encode model update: %w", err)
	}
	topics := schemas.Topics{Prefix: cfg.Kafka.TopicPrefix}
	specs := stream.PipelineTopics(cfg.Kafka.TopicPrefix, stream.TopicNames{Models: "models"}, 1, 0)
	if err := stream.EnsureTopics(ctx, cfg.Kafka, specs); err != nil {
		return fmt.Errorf("models topic: %w", err)
	}
	p, err := stream.NewProducer(cfg.Kafka, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer p.Close()
	msg := kafka.Message{Topic: topics.Models(), Key: []byte(m.Name), Value: val, Time: time.Now()}
	if err := p.Produce(ctx, msg); err != nil {
		return fmt.Errorf("publish model: %w", err)
	}
	log.Info("model published", "topic", topics.Models(), "key", m.Name, "model_version", m.Version, "key_id", keyID, "bytes", len(val))
	return nil
}

// derived returns the output path: v itself, "" for "none", or out with
// suffix when v is empty.
func derived(v, out, suffix string) string {
	switch v {
	case "none":
		return ""
	case "":
		return strings.TrimSuffix(out, filepath.Ext(out)) + suffix
	}
	return v
}

// progressBar draws training progress with rate and ETA on a terminal, and
// nothing otherwise (logs are for machines; a bar redrawn with \r is not).
type progressBar struct {
	w     io.Writer
	on    bool
	start time.Time
	last  time.Time
	run   string
	step0 int
	drawn bool
	width int
}

func newProgressBar(w io.Writer, mode string) *progressBar {
	on := mode == "on"
	if mode == "auto" {
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				on = true
			}
		}
	}
	return &progressBar{w: w, on: on, width: 30}
}

func (p *progressBar) update(rp train.RunProgress) {
	if !p.on {
		return
	}
	now := time.Now()
	if rp.Run != p.run {
		if p.drawn {
			fmt.Fprintln(p.w)
		}
		p.run, p.start, p.step0 = rp.Run, now, rp.Step
	}
	// Redraw at most ten times a second, but always at epoch ends.
	if now.Sub(p.last) < 100*time.Millisecond && rp.ValMetric == rp.ValMetric {
		return
	}
	p.last = now
	frac := 0.0
	if rp.Steps > 0 {
		frac = min(float64(rp.Step)/float64(rp.Steps), 1)
	}
	n := int(frac * float64(p.width))
	el := now.Sub(p.start).Seconds()
	rate := float64(rp.Step-p.step0) / max(el, 1e-9)
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(rp.Steps-rp.Step)/rate) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\r%-14s [%s%s] %3.0f%% %d/%d steps %5.1f steps/s ETA %-6s %s %d/%d loss %.3f ",
		rp.Run, strings.Repeat("=", n), strings.Repeat(" ", p.width-n), 100*frac, rp.Step, rp.Steps, rate, eta,
		rp.Phase, rp.Epoch, rp.Epochs, rp.Loss)
	p.drawn = true
}

func (p *progressBar) done() {
	if p.on && p.drawn {
		fmt.Fprintln(p.w)
	}
}
