package loadgen

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// WriteReport writes a self-contained HTML report (inline SVG, no scripts, no network):
// the summary, throughput over time and the latency distribution.
func WriteReport(w io.Writer, r Result) error {
	summary, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	verdict := ""
	if r.KeepsUp != nil {
		verdict = map[bool]string{true: "Herald kept the core's pace", false: "Herald fell behind the core"}[*r.KeepsUp]
	}
	return reportTmpl.Execute(w, map[string]any{
		"Verdict":    verdict,
		"Summary":    string(summary),
		"Throughput": template.HTML(throughputSVG(r.Series)),     //nolint:gosec // built from numbers only
		"Latency":    template.HTML(latencySVG(r.Latencies.All)), //nolint:gosec // built from numbers only
		"Lag":        template.HTML(lagSVG(r.Series)),            //nolint:gosec // built from numbers only
		"R":          r,
	})
}

const width, height, pad = 760.0, 260.0, 40.0

func throughputSVG(pts []Point) string {
	committed, sent := make([]int, len(pts)), make([]int, len(pts))
	for i, p := range pts {
		committed[i], sent[i] = p.Committed, p.Sent
	}
	return chart("/s",
		chartLine{committed, `stroke="#999" stroke-dasharray="4 3"`, "#777", "events committed per second"},
		chartLine{sent, `stroke="#1f6feb" stroke-width="2"`, "#1f6feb", "events delivered (SMS accepted) per second"})
}

func lagSVG(pts []Point) string {
	return chart("", chartLine{lagSeries(pts), `stroke="#cf222e" stroke-width="2"`, "#cf222e",
		"events committed and not yet handled (SMS ended), at the end of each second"})
}

// chartLine is one line of a chart: a value per second, drawn with style, and its
// legend in color.
type chartLine struct {
	values       []int
	style, color string
	legend       string
}

// chart draws lines over the seconds of the run, scaled to their largest value,
// which labels the vertical axis with unit after it.
func chart(unit string, lines ...chartLine) string {
	n := len(lines[0].values)
	if n == 0 {
		return "<p>no data</p>"
	}
	top := 1
	for _, l := range lines {
		for _, v := range l.values {
			top = max(top, v)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img">
<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/><line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>
<text x="%.0f" y="%.0f" font-size="11">%d%s</text><text x="%.0f" y="%.0f" font-size="11">%d s</text>
`, width, height, width, height, pad, height-pad, width-pad, height-pad, pad, pad, pad, height-pad,
		2.0, pad, top, unit, width-pad-20, height-pad+15, n-1)
	for _, l := range lines {
		b.WriteString(`<polyline fill="none" ` + l.style + ` points="`)
		for i, v := range l.values {
			fmt.Fprintf(&b, "%.1f,%.1f ", pad+float64(i)*(width-2*pad)/math.Max(1, float64(n-1)),
				height-pad-float64(v)*(height-2*pad)/float64(top))
		}
		b.WriteString("\"/>\n")
	}
	for i := len(lines) - 1; i >= 0; i-- {
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" font-size="12" fill="%s">%s</text>`, pad, 14+14*(len(lines)-1-i), lines[i].color, lines[i].legend)
	}
	b.WriteString("</svg>")
	return b.String()
}

func latencySVG(h *hdrhistogram.Histogram) string {
	if h == nil || h.TotalCount() == 0 {
		return "<p>no data</p>"
	}
	// Logarithmic buckets from 1 ms to 100 s, five per decade.
	const buckets = 25
	counts := make([]int64, buckets)
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		ms := float64(bar.From+bar.To) / 2 / 1000
		i := int(math.Floor(math.Log10(math.Max(ms, 1)) * 5))
		counts[min(max(i, 0), buckets-1)] += bar.Count
	}
	top := int64(1)
	for _, c := range counts {
		top = max(top, c)
	}
	var b strings.Builder
	bw := (width - 2*pad) / buckets
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img">`, width, height, width, height)
	for i, c := range counts {
		h := float64(c) * (height - 2*pad) / float64(top)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f6feb"><title>%.0f–%.0f ms: %d</title></rect>`,
			pad+float64(i)*bw, height-pad-h, bw-2, h, math.Pow(10, float64(i)/5), math.Pow(10, float64(i+1)/5), c)
	}
	for _, d := range []int{0, 1, 2, 3, 4} {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="11">%s</text>`, pad+float64(d*5)*bw, height-pad+15,
			[]string{"1 ms", "10 ms", "100 ms", "1 s", "10 s"}[d])
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="14" font-size="12">deliveries by latency (outbox commit → provider accepted), log scale</text></svg>`, pad)
	return b.String()
}

var reportTmpl = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Herald load test</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:820px}pre{background:#f6f8fa;padding:1em;overflow:auto}</style></head>
<body><h1>Herald load test</h1>
<p>{{.R.Events}} events, {{.R.Deliveries}} deliveries on {{.R.Database}} ({{.R.Transport}} topics) with {{.R.Writers}} writers:
{{.R.EventsPerSecond}} events/s; latency p50 {{.R.LatencyMs.P50}} ms, p99 {{.R.LatencyMs.P99}} ms; lost {{.R.Lost}}, duplicates {{.R.Duplicates}}.</p>
{{with .Verdict}}<p><strong>{{.}}</strong>: the lag grew {{$.R.Lag.GrowthPerSecond}} events a second,
{{$.R.Lag.AtLastCommit}} events when the core stopped.</p>{{end}}
<h2>Throughput over time</h2>{{.Throughput}}
<h2>Lag over time</h2>{{.Lag}}
<h2>Latency distribution</h2>{{.Latency}}
<h2>Summary</h2><pre>{{.Summary}}</pre></body></html>
`))
