// Package api serves the HTTP endpoints.
package api

import (
	"context"
	"encoding/json"
	"log"
	"math/rand"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xyibank/monitoring-dashboard-api/internal/cache"
	"github.com/xyibank/monitoring-dashboard-api/internal/store"
)

// MaxPoints bounds one history answer.
const MaxPoints = 5000

// MaxDuration bounds the history window: the data kept is 30 days.
const MaxDuration = 30 * 24 * time.Hour

var metricTypes = map[string]bool{"cpu": true, "memory": true, "disk": true, "network": true}

// Each process draws its own failures (Go 1.19 seeds math/rand with 1 otherwise).
func init() { rand.Seed(time.Now().UnixNano()) }

// Server holds what the handlers need. Cache may be nil (Redis disabled or unreachable).
type Server struct {
	Store    store.Store
	Cache    cache.Cache
	CacheTTL time.Duration
	Version  string
	Log      *log.Logger
	// SlowBy is added to every history answer; FailPerMille of them answer 500 (the subtle
	// regressions of v2.0.2-slow and v2.0.3-flaky; zero in every other release).
	SlowBy       time.Duration
	FailPerMille int
}

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/auth/status", s.authStatus)
	mux.HandleFunc("/api/v1/metrics/history", s.history)
	mux.HandleFunc("/api/v1/version", s.version)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, body interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}

// authStatus is the health check: it answers only when the database does.
func (s *Server) authStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		s.Log.Printf("ERROR health check: database: %v", err)
		writeError(w, http.StatusServiceUnavailable, "database unavailable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"auth_enabled": false, "authenticated": true})
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": s.Version})
}

// ParseDuration accepts Go durations (90m, 1h) and whole days (7d), up to MaxDuration.
func ParseDuration(text string) (time.Duration, bool) {
	var d time.Duration
	var err error
	if strings.HasSuffix(text, "d") {
		var days int
		days, err = strconv.Atoi(strings.TrimSuffix(text, "d"))
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(text)
	}
	if err != nil || d <= 0 || d > MaxDuration {
		return 0, false
	}
	return d, true
}

type historyAnswer struct {
	Type     string        `json:"type"`
	Duration string        `json:"duration"`
	Count    int           `json:"count"`
	Points   []store.Point `json:"points"`
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	if s.FailPerMille > 0 && rand.Intn(1000) < s.FailPerMille {
		s.Log.Printf("ERROR history: transient failure")
		writeError(w, http.StatusInternalServerError, "transient failure")
		return
	}
	if s.SlowBy > 0 {
		time.Sleep(s.SlowBy)
	}
	metricType := r.URL.Query().Get("type")
	durationText := r.URL.Query().Get("duration")
	if !metricTypes[metricType] {
		writeError(w, http.StatusBadRequest, "type must be one of cpu, memory, disk, network")
		return
	}
	window, ok := ParseDuration(durationText)
	if !ok {
		writeError(w, http.StatusBadRequest, "duration must be like 1h, 90m or 7d (at most 30d)")
		return
	}
	key := cache.HistoryKey(metricType, durationText)
	if s.Cache != nil {
		body, found, err := s.Cache.Get(key)
		if err != nil {
			s.Log.Printf("WARN Redis get %s: %v", key, err)
		} else if found {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Cache", "HIT")
			w.Write(body)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	points, err := s.Store.History(ctx, metricType, window, MaxPoints)
	if err != nil {
		s.Log.Printf("ERROR Database history query: %v", err)
		writeError(w, http.StatusInternalServerError, "database query failed")
		return
	}
	body, _ := json.Marshal(historyAnswer{metricType, durationText, len(points), points})
	body = append(body, '\n')
	if s.Cache != nil {
		if err := s.Cache.Set(key, body, s.CacheTTL); err != nil {
			s.Log.Printf("WARN Redis set %s: %v", key, err)
		}
		w.Header().Set("X-Cache", "MISS")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}
