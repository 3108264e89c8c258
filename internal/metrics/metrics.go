package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers collectors with reg, skipping any already registered there, so a component
// may register its metrics every time it starts.
func Register(reg prometheus.Registerer, collectors ...prometheus.Collector) error {
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return err
		}
	}
	return nil
}
