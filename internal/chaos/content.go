package chaos

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/tailor-email/tailor/templates/contentdemo"
)

// Content API modes.
const (
	contentOK   int32 = iota
	contentDown       // every request answered 503
	contentSlow       // every answer delayed past the template's timeout
)

// contentServer is the content API the campaign's template calls, with a switch for faults.
type contentServer struct {
	mode  atomic.Int32
	hits  atomic.Int64
	srv   *http.Server
	URL   string
	delay time.Duration
}

func startContent() (*contentServer, error) {
	h, err := contentdemo.NewHandler(contentdemo.Config{})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cs := &contentServer{URL: "http://" + ln.Addr().String(), delay: 3 * time.Second}
	cs.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.hits.Add(1)
		switch cs.mode.Load() {
		case contentDown:
			http.Error(w, "chaos: content API down", http.StatusServiceUnavailable)
			return
		case contentSlow:
			t := time.NewTimer(cs.delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	})}
	go func() { _ = cs.srv.Serve(ln) }()
	return cs, nil
}

func (cs *contentServer) Close() error { return cs.srv.Close() }
