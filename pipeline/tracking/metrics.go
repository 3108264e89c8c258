package tracking

import "github.com/prometheus/client_golang/prometheus"

// hits counts tracking requests with a valid token by kind (open, click) and result
// (recorded, unknown_message, error). Refused tokens are not counted here: anyone can send them.
var hits = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "tailor_tracking_hits_total", Help: "Tracking requests with a valid token, by kind (open, click) and result (recorded, unknown_message, error).",
}, []string{"kind", "result"})

// MetricsCollectors are the tracking metrics.
func MetricsCollectors() []prometheus.Collector { return []prometheus.Collector{hits} }
