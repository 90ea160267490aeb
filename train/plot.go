package train

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// WritePlots writes PNG plots of a report into dir: loss.png (training
// losses and the validation metric per epoch), roc.png and pr.png (attack
// score and anomaly score on the test split) and confusion.png (row-
// normalised confusion matrix at the deployed thresholds). It returns the
// files written.
func WritePlots(dir string, rep *Report) ([]string, error) {
	var files []string
	save := func(p *plot.Plot, name string, w, h vg.Length) error {
		path := filepath.Join(dir, name)
		if err := p.Save(w, h, path); err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		files = append(files, path)
		return nil
	}
	if p, err := lossPlot(rep); err != nil {
		return files, err
	} else if err := save(p, "loss.png", 8*vg.Inch, 5*vg.Inch); err != nil {
		return files, err
	}
	if rep.Test != nil {
		ev := rep.Test
		p, err := curvePlot("ROC on the test split", "false-positive rate", "true-positive rate",
			[]namedCurve{{"classifier 1-p(benign)", ev.ROC}, {"anomaly score", ev.AnomalyROC}}, true)
		if err != nil {
			return files, err
		}
		if err := save(p, "roc.png", 6*vg.Inch, 6*vg.Inch); err != nil {
			return files, err
		}
		p, err = curvePlot("Precision-recall on the test split", "recall", "precision",
			[]namedCurve{{"classifier 1-p(benign)", ev.PR}, {"anomaly score", ev.AnomalyPR}}, false)
		if err != nil {
			return files, err
		}
		if err := save(p, "pr.png", 6*vg.Inch, 6*vg.Inch); err != nil {
			return files, err
		}
		if len(ev.Confusion) > 0 {
			p, err := confusionPlot(ev.Confusion, rep.Model.Classes)
			if err != nil {
				return files, err
			}
			side := vg.Length(4+0.45*float64(len(ev.Confusion))) * vg.Inch
			if err := save(p, "confusion.png", side+2*vg.Inch, side); err != nil {
				return files, err
			}
		}
	}
	return files, nil
}

var lineColors = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff},
}

func lossPlot(rep *Report) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Training losses (unweighted) and validation metric per epoch"
	p.X.Label.Text = "epoch (pretraining, then multi-task)"
	p.Y.Label.Text = "loss"
	p.Legend.Top = true
	series := []struct {
		name string
		get  func(Epoch) float64
	}{
		{"next-flow prediction", func(e Epoch) float64 { return e.Predict }},
		{"classification", func(e Epoch) float64 { return e.Classify }},
		{"prototypical (meta)", func(e Epoch) float64 { return e.Meta }},
		{"adversarial", func(e Epoch) float64 { return e.Adversarial }},
		{"validation metric", func(e Epoch) float64 { return e.ValMetric }},
	}
	for k, s := range series {
		var xy plotter.XYs
		for i, e := range rep.Training.History {
			if v := s.get(e); v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
				xy = append(xy, plotter.XY{X: float64(i + 1), Y: v})
			}
		}
		if len(xy) == 0 {
			continue
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = lineColors[k%len(lineColors)]
		l.Width = vg.Points(1.5)
		if k == len(series)-1 {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	if b := rep.Training.BestEpoch; b >= 0 && b < len(rep.Training.History) {
		mark, err := plotter.NewScatter(plotter.XYs{{X: float64(b + 1), Y: rep.Training.History[b].ValMetric}})
		if err == nil {
			p.Add(mark)
			p.Legend.Add("kept model", mark)
		}
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

type namedCurve struct {
	name string
	c    Curve
}

func curvePlot(title, x, y string, cs []namedCurve, diagonal bool) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1.02
	p.Legend.Top = !diagonal
	p.Legend.Left = false
	for k, nc := range cs {
		if len(nc.c.X) == 0 {
			continue
		}
		xy := make(plotter.XYs, len(nc.c.X))
		for i := range xy {
			xy[i] = plotter.XY{X: nc.c.X[i], Y: nc.c.Y[i]}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = lineColors[k%len(lineColors)]
		l.Width = vg.Points(2)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (AUC %.3f)", nc.name, float64(nc.c.AUC)), l)
	}
	if diagonal {
		d, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
		if err != nil {
			return nil, err
		}
		d.Color = color.Gray{0xaa}
		d.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(d)
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

// confusionGrid is a row-normalised confusion matrix as a plotter.GridXYZ:
// column c is the predicted class, row r the true class, drawn top-down.
type confusionGrid struct {
	m [][]float64
}

func (g confusionGrid) Dims() (c, r int)   { return len(g.m), len(g.m) }
func (g confusionGrid) Z(c, r int) float64 { return g.m[len(g.m)-1-r][c] }
func (g confusionGrid) X(c int) float64    { return float64(c) }
func (g confusionGrid) Y(r int) float64    { return float64(r) }
func (g confusionGrid) Min() float64       { return 0 }
func (g confusionGrid) Max() float64       { return 1 }

func confusionPlot(conf [][]int, classes []string) (*plot.Plot, error) {
	n := len(conf)
	g := confusionGrid{m: make([][]float64, n)}
	var labels plotter.XYLabels
	for i, row := range conf {
		tot := 0
		for _, v := range row {
			tot += v
		}
		g.m[i] = make([]float64, n)
		for j, v := range row {
			if tot > 0 {
				g.m[i][j] = float64(v) / float64(tot)
			}
			if v > 0 {
				labels.XYs = append(labels.XYs, plotter.XY{X: float64(j), Y: float64(n - 1 - i)})
				labels.Labels = append(labels.Labels, fmt.Sprint(v))
			}
		}
	}
	p := plot.New()
	p.Title.Text = "Confusion on the test split (rows: true class; cells: flows, colour: row share)"
	p.X.Label.Text = "alerted as (benign = no alert)"
	p.Y.Label.Text = "true class"
	hm := plotter.NewHeatMap(g, moreland.SmoothBlueRed().Palette(64))
	p.Add(hm)
	if len(labels.XYs) > 0 {
		l, err := plotter.NewLabels(labels)
		if err != nil {
			return nil, err
		}
		for i := range l.TextStyle {
			l.TextStyle[i].XAlign, l.TextStyle[i].YAlign = -0.5, -0.5
		}
		p.Add(l)
	}
	xt, yt := make([]plot.Tick, n), make([]plot.Tick, n)
	for i := range n {
		name := fmt.Sprint(i)
		if i < len(classes) {
			name = classes[i]
		}
		xt[i] = plot.Tick{Value: float64(i), Label: fmt.Sprintf("%d", i)}
		yt[n-1-i] = plot.Tick{Value: float64(n - 1 - i), Label: fmt.Sprintf("%s (%d)", name, i)}
	}
	p.X.Tick.Marker = plot.ConstantTicks(xt)
	p.Y.Tick.Marker = plot.ConstantTicks(yt)
	return p, nil
}
