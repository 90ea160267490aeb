package adapter

import (
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
)

// ScriptedAnalyst plays an analyst in the demo: it watches the scores topic
// and labels the first Budget flows of one family, known from the traffic
// generator's ground truth, as an analyst would after spotting a new
// campaign. Send what Observe returns with SendLabels. It is not safe for
// concurrent use.
type ScriptedAnalyst struct {
	// Family is the verdict it gives.
	Family string
	// Truth returns a flow's ground-truth family, and false if the flow is
	// unknown to it.
	Truth func(flowID uint64) (family string, ok bool)
	// Budget is how many labels it gives in all; 0 means 10.
	Budget int
	// Analyst names it in the labels; "" means "scripted-analyst".
	Analyst string

	labelled map[uint64]bool
}

// Observe returns labels for the flows of v that belong to Family and have
// not been labelled yet, until the budget is spent.
func (a *ScriptedAnalyst) Observe(v *features.ScoresView) []schemas.Label {
	if a.labelled == nil {
		a.labelled = map[uint64]bool{}
	}
	analyst := a.Analyst
	if analyst == "" {
		analyst = "scripted-analyst"
	}
	var out []schemas.Label
	for i := range v.Len() {
		if a.Done() {
			break
		}
		id := v.FlowID(i)
		if a.labelled[id] {
			continue
		}
		if fam, ok := a.Truth(id); ok && fam == a.Family {
			a.labelled[id] = true
			out = append(out, FlowLabel(id, a.Family, analyst, "scripted analyst: ground truth of the demo traffic"))
		}
	}
	return out
}

// Done reports whether the budget is spent.
func (a *ScriptedAnalyst) Done() bool {
	budget := a.Budget
	if budget == 0 {
		budget = 10
	}
	return len(a.labelled) >= budget
}
