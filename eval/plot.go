package eval

import (
	"fmt"
	"image/color"
	"maps"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/metaids/metaids/train"
)

var (
	colAny    = color.RGBA{0x1f, 0x77, 0xb4, 0xff}
	colFamily = color.RGBA{0xd6, 0x27, 0x28, 0xff}
	colMark   = color.RGBA{0x2c, 0xa0, 0x2c, 0xff}
	colGrey   = color.Gray{0xaa}
)

// recallWindow is the flows the recall-over-time plot averages over.
const recallWindow = 25

// WritePlots writes PNG plots of rep into dir: roc.png and pr.png (the
// attack score 1 − p(benign) over every scored flow with a verdict) and,
// per new family, recall_<verdict>.png: its recall over its flows in
// replay order (a moving average over recallWindow flows, as any attack
// and as the family), with the K-th labelled flow and the first flow the
// update scored marked. It returns the files written.
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
	title := fmt.Sprintf(" (%s, %d flows)", rep.Mode, rep.Flows)
	p, err := curvePlot("ROC of 1-p(benign)"+title, "false-positive rate", "true-positive rate", rep.Curves.ROC, true)
	if err != nil {
		return files, err
	}
	if err := save(p, "roc.png", 6*vg.Inch, 6*vg.Inch); err != nil {
		return files, err
	}
	if p, err = curvePlot("Precision-recall of 1-p(benign)"+title, "recall", "precision", rep.Curves.PR, false); err != nil {
		return files, err
	}
	if err := save(p, "pr.png", 6*vg.Inch, 6*vg.Inch); err != nil {
		return files, err
	}
	for _, name := range slices.Sorted(maps.Keys(rep.NewFamilies)) {
		fr := rep.NewFamilies[name]
		p, err := recallPlot(name, fr)
		if err != nil {
			return files, err
		}
		if err := save(p, "recall_"+fr.Verdict+".png", 9*vg.Inch, 4*vg.Inch); err != nil {
			return files, err
		}
	}
	return files, nil
}

func curvePlot(title, x, y string, c train.Curve, diagonal bool) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1.02
	p.Legend.Top = !diagonal
	if len(c.X) > 0 {
		xy := make(plotter.XYs, len(c.X))
		for i := range xy {
			xy[i] = plotter.XY{X: c.X[i], Y: c.Y[i]}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width = colAny, vg.Points(2)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("attack score (AUC %.4f)", float64(c.AUC)), l)
	}
	if diagonal {
		d, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
		if err != nil {
			return nil, err
		}
		d.Color, d.Dashes = colGrey, []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(d)
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

// recallPlot draws a new family's recall over its flows from its timeline.
func recallPlot(name string, fr *FamilyResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: recall over its flows (moving average of %d), K = %d", name, recallWindow, fr.Shots)
	p.X.Label.Text = "flow of the family, in replay order"
	p.Y.Label.Text = "recall"
	p.Y.Min, p.Y.Max = 0, 1.05
	p.Legend.Top, p.Legend.Left = false, false
	var anyXY, famXY plotter.XYs
	var win []byte
	for i := 0; i < len(fr.Timeline); i++ {
		if fr.Timeline[i] == '-' {
			continue
		}
		win = append(win, fr.Timeline[i])
		if len(win) > recallWindow {
			win = win[1:]
		}
		var a, f int
		for _, c := range win {
			a += b2i(c == 'a' || c == 'F')
			f += b2i(c == 'F')
		}
		n := float64(len(win))
		anyXY = append(anyXY, plotter.XY{X: float64(i), Y: float64(a) / n})
		famXY = append(famXY, plotter.XY{X: float64(i), Y: float64(f) / n})
	}
	for _, s := range []struct {
		xy    plotter.XYs
		name  string
		color color.Color
	}{{anyXY, "alerted as any attack", colAny}, {famXY, "alerted as " + fr.Verdict, colFamily}} {
		if len(s.xy) == 0 {
			continue
		}
		l, err := plotter.NewLine(s.xy)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width = s.color, vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	for _, mk := range []struct {
		at     int
		name   string
		dashed bool
	}{{fr.LabelledAt, "K-th flow scored: labels sent", true}, {fr.LiveAt, "first flow scored by the update", false}} {
		if mk.at < 0 {
			continue
		}
		l, err := plotter.NewLine(plotter.XYs{{X: float64(mk.at), Y: 0}, {X: float64(mk.at), Y: 1.05}})
		if err != nil {
			return nil, err
		}
		l.Color, l.Width = colMark, vg.Points(1)
		if mk.dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(mk.name, l)
	}
	p.Add(plotter.NewGrid())
	return p, nil
}
