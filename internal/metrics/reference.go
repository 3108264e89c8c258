package metrics

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Info describes one metric: what the README's metrics table lists and what dashboards and
// alert rules may name.
type Info struct {
	Name   string
	Type   string // counter, gauge or histogram
	Labels []string
	Help   string
}

// Typed is implemented by custom collectors (those built on prometheus.Desc), whose type the
// client library does not expose: it returns "counter", "gauge" or "histogram" for a name the
// collector describes.
type Typed interface {
	MetricType(name string) string
}

// descRE parses prometheus.Desc.String(), the only way the client library shows a Desc's name,
// help and labels. TestReference_ParsesDescs fails if a client upgrade changes the format.
var descRE = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), help: ("(?:[^"\\]|\\.)*"), (?:unit: "(?:[^"\\]|\\.)*", )?constLabels: \{(.*)\}, variableLabels: \{(.*)\}\}$`)

// Reference describes every metric of collectors, sorted by name. The collectors' Collect is
// never called, so collectors over a nil database may be passed.
func Reference(collectors ...prometheus.Collector) ([]Info, error) {
	var out []Info
	for _, c := range collectors {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := descRE.FindStringSubmatch(d.String())
			if m == nil {
				return nil, fmt.Errorf("metrics: cannot parse %s", d)
			}
			name, err1 := strconv.Unquote(m[1])
			help, err2 := strconv.Unquote(m[2])
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("metrics: parse %s: %w", d, err)
			}
			var labels []string
			for _, kv := range strings.Split(m[3], ",") {
				if k, _, ok := strings.Cut(kv, "="); ok {
					labels = append(labels, k)
				}
			}
			for _, l := range strings.Split(m[4], ",") {
				if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
					labels = append(labels, l)
				}
			}
			slices.Sort(labels)
			typ, err := typeOf(c, name)
			if err != nil {
				return nil, err
			}
			out = append(out, Info{Name: name, Type: typ, Labels: labels, Help: help})
		}
	}
	slices.SortFunc(out, func(a, b Info) int { return cmp.Compare(a.Name, b.Name) })
	for i := 1; i < len(out); i++ {
		if out[i].Name == out[i-1].Name {
			return nil, fmt.Errorf("metrics: %s is described twice", out[i].Name)
		}
	}
	return out, nil
}

func typeOf(c prometheus.Collector, name string) (string, error) {
	switch c := c.(type) {
	case Typed:
		return c.MetricType(name), nil
	case *prometheus.CounterVec:
		return "counter", nil
	case *prometheus.GaugeVec:
		return "gauge", nil
	case *prometheus.HistogramVec:
		return "histogram", nil
	case prometheus.Gauge: // before Counter: a Gauge has Counter's methods too
		return "gauge", nil
	case prometheus.Counter:
		return "counter", nil
	case prometheus.Histogram:
		return "histogram", nil
	}
	return "", fmt.Errorf("metrics: the type of %s is unknown: its collector (%T) should implement metrics.Typed", name, c)
}

// baseUnits are the unit suffixes metric names may end with (Prometheus base units); other
// time or size units are refused.
var (
	badUnits = regexp.MustCompile(`_(ms|millis|milliseconds|micros|microseconds|us|ns|nanoseconds|minutes|hours|days|kb|mb|gb|kilobytes|megabytes|percent)(_|$)`)
)

// CheckName returns an error when a metric breaks the naming rules every Tailor component
// follows (https://prometheus.io/docs/practices/naming/): the tailor_ prefix, lower snake case,
// base units (_seconds, _bytes, _ratio), _total on counters and only there, no _total, _count,
// _sum or _bucket on other types, labels in lower snake case and never "le" or "quantile".
func CheckName(i Info) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{i.Name}, args...)...))
	}
	if !regexp.MustCompile(`^tailor_[a-z][a-z0-9_]*[a-z0-9]$`).MatchString(i.Name) || strings.Contains(i.Name, "__") {
		bad("want tailor_ and lower snake case")
	}
	if m := badUnits.FindStringSubmatch(i.Name); m != nil {
		bad("unit %q: use base units (_seconds, _bytes, _ratio)", m[1])
	}
	total := strings.HasSuffix(i.Name, "_total")
	switch i.Type {
	case "counter":
		if !total {
			bad("a counter's name ends in _total")
		}
	case "gauge", "histogram":
		if total {
			bad("only counters end in _total")
		}
	default:
		bad("type %q: want counter, gauge or histogram", i.Type)
	}
	for _, s := range []string{"_count", "_sum", "_bucket"} {
		if strings.HasSuffix(i.Name, s) {
			bad("the suffix %s is reserved for histograms' series", s)
		}
	}
	if i.Help == "" {
		bad("no help text")
	}
	for _, l := range i.Labels {
		if !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(l) || l == "le" || l == "quantile" {
			bad("label %q: want lower snake case, not le or quantile", l)
		}
	}
	return errors.Join(errs...)
}

// Series returns the names a query may use for i: its name, and for a histogram the
// _bucket, _sum and _count series.
func (i Info) Series() []string {
	if i.Type == "histogram" {
		return []string{i.Name + "_bucket", i.Name + "_sum", i.Name + "_count"}
	}
	return []string{i.Name}
}

// Table renders infos as the README's markdown table.
func Table(infos []Info) string {
	var b strings.Builder
	b.WriteString("| metric | type | labels | help |\n| --- | --- | --- | --- |\n")
	for _, i := range infos {
		labels := "-"
		if len(i.Labels) > 0 {
			labels = "`" + strings.Join(i.Labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", i.Name, i.Type, labels, strings.ReplaceAll(i.Help, "|", `\|`))
	}
	return b.String()
}
