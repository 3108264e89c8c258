// Package contentdemo is a demo content service for templates' content sources: product
// recommendations and a daily offer, from a small built-in catalog (or one loaded from JSON), with
// knobs for latency, jitter and errors so fallbacks, caching and circuit breaking can be seen
// working. `tailor content serve` wires it; it is not meant for production traffic.
//
//	GET /recommendations?customer=ID&categories=a,b  -> {"items":[{"name","url","price_minor","currency","category"}...]}
//	GET /offer                                       -> {"code","headline","percent_off"}
//
// Answers are deterministic: the same customer gets the same items, and the offer changes once a
// day (UTC).
package contentdemo

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// Item is a catalog product.
type Item struct {
	Name       string `json:"name"`
	URL        string `json:"url"`
	PriceMinor int64  `json:"price_minor"` // price in minor units of Currency (cents)
	Currency   string `json:"currency"`    // ISO 4217
	Category   string `json:"category"`
}

// Offer is the daily offer.
type Offer struct {
	Code       string `json:"code"`
	Headline   string `json:"headline"`
	PercentOff int    `json:"percent_off"`
}

// Defaults.
const (
	RecommendationsDefault = 4 // items per answer
)

// Config configures a Handler. Zero values mean defaults.
type Config struct {
	// Catalog is the products to recommend. Default: a built-in catalog of 12 products.
	Catalog []Item
	// Offers rotate one per day. Default: a built-in list.
	Offers []Offer
	// Items is the number of items per recommendation answer. Default 4.
	Items int
	// Latency is added before every answer; Jitter adds a uniformly random extra up to Jitter.
	// Default 0 (none).
	Latency, Jitter time.Duration
	// ErrorRate is the fraction (0..1) of requests answered 500. Default 0.
	ErrorRate float64
	// Now is the clock that picks the daily offer. Default time.Now.
	Now func() time.Time
}

// Handler serves the demo content API. It is safe for concurrent use.
type Handler struct {
	cfg Config
	mux *http.ServeMux
}

// NewHandler returns a Handler; it fails when the config is out of range.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.ErrorRate < 0 || cfg.ErrorRate > 1 {
		return nil, fmt.Errorf("contentdemo: ErrorRate %v is not between 0 and 1", cfg.ErrorRate)
	}
	if cfg.Latency < 0 || cfg.Jitter < 0 {
		return nil, fmt.Errorf("contentdemo: Latency and Jitter must not be negative")
	}
	if len(cfg.Catalog) == 0 {
		cfg.Catalog = DefaultCatalog()
	}
	if len(cfg.Offers) == 0 {
		cfg.Offers = defaultOffers()
	}
	if cfg.Items <= 0 {
		cfg.Items = RecommendationsDefault
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /recommendations", h.recommendations)
	h.mux.HandleFunc("GET /offer", h.offer)
	return h, nil
}

// LoadCatalog reads a JSON array of Items from path.
func LoadCatalog(path string) ([]Item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	defer f.Close()
	var items []Item
	if err := json.NewDecoder(io.LimitReader(f, 16<<20)).Decode(&items); err != nil {
		return nil, fmt.Errorf("load catalog %s: %w", path, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("load catalog %s: no items", path)
	}
	return items, nil
}

// ServeHTTP applies the latency and error knobs, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d := h.cfg.Latency + jitter(h.cfg.Jitter); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	if h.cfg.ErrorRate > 0 && rand.Float64() < h.cfg.ErrorRate {
		http.Error(w, `{"error":"injected failure"}`, http.StatusInternalServerError)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max + 1)
}

func (h *Handler) recommendations(w http.ResponseWriter, r *http.Request) {
	customer := r.URL.Query().Get("customer")
	var want []string
	for c := range strings.SplitSeq(r.URL.Query().Get("categories"), ",") {
		if c = strings.TrimSpace(strings.ToLower(c)); c != "" {
			want = append(want, c)
		}
	}
	pool := h.cfg.Catalog
	if len(want) > 0 {
		var filtered []Item
		for _, it := range h.cfg.Catalog {
			if slices.Contains(want, strings.ToLower(it.Category)) {
				filtered = append(filtered, it)
			}
		}
		if len(filtered) > 0 {
			pool = filtered
		}
	}
	// A deterministic per-customer shuffle: rank items by hash(customer, item name).
	ranked := slices.Clone(pool)
	slices.SortStableFunc(ranked, func(a, b Item) int {
		ha, hb := hash(customer, a.Name), hash(customer, b.Name)
		switch {
		case ha < hb:
			return -1
		case ha > hb:
			return 1
		}
		return 0
	})
	if len(ranked) > h.cfg.Items {
		ranked = ranked[:h.cfg.Items]
	}
	writeJSON(w, map[string]any{"items": ranked})
}

func (h *Handler) offer(w http.ResponseWriter, _ *http.Request) {
	day := h.cfg.Now().UTC().Format(time.DateOnly)
	writeJSON(w, h.cfg.Offers[hash("offer", day)%uint64(len(h.cfg.Offers))])
}

func hash(a, b string) uint64 {
	sum := sha256.Sum256([]byte(a + "\x00" + b))
	return binary.BigEndian.Uint64(sum[:8])
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// DefaultCatalog returns the built-in demo catalog.
func DefaultCatalog() []Item {
	return []Item{
		{"Linen shirt", "https://shop.example/p/linen-shirt", 4900, "EUR", "apparel"},
		{"Merino sweater", "https://shop.example/p/merino-sweater", 8900, "EUR", "apparel"},
		{"Rain jacket", "https://shop.example/p/rain-jacket", 12900, "EUR", "apparel"},
		{"Canvas tote", "https://shop.example/p/canvas-tote", 1999, "EUR", "accessories"},
		{"Leather belt", "https://shop.example/p/leather-belt", 3500, "EUR", "accessories"},
		{"Wool beanie", "https://shop.example/p/wool-beanie", 2500, "EUR", "accessories"},
		{"Trail runners", "https://shop.example/p/trail-runners", 11900, "EUR", "shoes"},
		{"Canvas sneakers", "https://shop.example/p/canvas-sneakers", 6500, "EUR", "shoes"},
		{"Ceramic mug", "https://shop.example/p/ceramic-mug", 1400, "EUR", "home"},
		{"Linen throw", "https://shop.example/p/linen-throw", 5900, "EUR", "home"},
		{"Scented candle", "https://shop.example/p/scented-candle", 2200, "EUR", "home"},
		{"Field notebook", "https://shop.example/p/field-notebook", 900, "EUR", "stationery"},
	}
}

func defaultOffers() []Offer {
	return []Offer{
		{"SPRING10", "Spring refresh.", 10},
		{"WEEKEND15", "Weekend treat.", 15},
		{"HELLO20", "A little welcome gift.", 20},
		{"FREESHIP", "Free shipping today.", 0},
		{"FLASH25", "Flash sale, today only.", 25},
	}
}
